# MPI runs of the real binary through mpiexec (label mpi).
string(REPLACE ";" " " DT_MPIEXEC_STR "${DT_MPIEXEC}")
set(DT_MPI_ENV "DTRAIN=$<TARGET_FILE:dtrain>;MPIEXEC=${DT_MPIEXEC_STR};DT_TEST_DATA=${DT_TEST_DATA};DT_SOURCE=${PROJECT_SOURCE_DIR};${DT_SANITIZE_ENV}")

function(dt_mpi_test name script)
  add_test(NAME mpi_${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi/${script} ${ARGN})
  set_tests_properties(mpi_${name} PROPERTIES LABELS mpi FIXTURES_REQUIRED test_data
                       TIMEOUT 900 ENVIRONMENT "${DT_MPI_ENV}")
endfunction()

dt_mpi_test(same_updates_mlp_1234 same_updates.sh fashion_mnist_mlp.yaml "1 2 3 4")
dt_mpi_test(same_updates_lenet_124 same_updates.sh fashion_mnist_lenet.yaml "1 2 4")
dt_mpi_test(train_small_np1 train_small.sh 1)
dt_mpi_test(train_small_np2 train_small.sh 2)
dt_mpi_test(train_small_np3 train_small.sh 3)
dt_mpi_test(nonfinite_np2 nonfinite.sh)
dt_mpi_test(checkpoint_resume checkpoint_resume.sh)
dt_mpi_test(checkpoint_kill_rank checkpoint_kill.sh)
dt_mpi_test(checkpoint_damaged checkpoint_damaged.sh)
dt_mpi_test(overlap_vs_blocking overlap.sh)

# Every optimizer config: the same per-update losses on 1 and on 3 ranks, to
# a relative 1e-4. Looser than the 1e-5 of plain momentum SGD on purpose:
# the adaptive rules divide by sqrt(s) + eps, so a coordinate whose summed
# gradient is ~0 (cancellation, summed in another order on 3 ranks) takes a
# step of about lr * sign(rounding noise); measured: AdaGrad drifts to 3.4e-5
# in 20 updates, the others stay below 1e-5.
file(GLOB DT_OPTIM_CONFIGS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/configs/optim/*.yaml)
foreach(cfg ${DT_OPTIM_CONFIGS})
  get_filename_component(name ${cfg} NAME_WE)
  dt_mpi_test(same_updates_optim_${name} same_updates.sh optim/${name}.yaml "1 3")
  set_property(TEST mpi_same_updates_optim_${name} APPEND PROPERTY ENVIRONMENT RTOL=1e-4)
endforeach()
dt_mpi_test(runtime_blas_threads runtime.sh)

# The collective watchdog and the killed launcher, with and without the
# BLAS re-exec (the re-exec'd image must be found and signalled by name).
foreach(reexec force 0)
  foreach(t watchdog orphans)
    dt_mpi_test(${t}_reexec_${reexec} ${t}.sh)
    set_property(TEST mpi_${t}_reexec_${reexec} APPEND PROPERTY ENVIRONMENT DTRAIN_BLAS_REEXEC=${reexec})
  endforeach()
endforeach()
include(${CMAKE_CURRENT_LIST_DIR}/reduce_tests.cmake)

# The gradient exchange's strategies, and each optimizer sharded on 3 ranks
# against 1 rank (same tolerance as the replicated test above).
dt_mpi_test(exchange_strategies exchange.sh)
foreach(cfg ${DT_OPTIM_CONFIGS})
  get_filename_component(name ${cfg} NAME_WE)
  dt_mpi_test(same_updates_sharded_${name} same_updates.sh optim/${name}.yaml "1 3"
              --set comm.update=sharded)
  set_property(TEST mpi_same_updates_sharded_${name} APPEND PROPERTY ENVIRONMENT RTOL=1e-4)
endforeach()

# Storage faults (disk full during a checkpoint, metrics.jsonl or
# summary.json; an out_dir that cannot be created or written): injected by
# the preload library tools/fault_inject.c everywhere, and a real full tmpfs
# where mount is permitted (SKIP otherwise).
dt_mpi_test(storage_faults storage_faults.sh inject)
dt_mpi_test(storage_faults_tmpfs storage_faults.sh tmpfs)
set_property(TEST mpi_storage_faults mpi_storage_faults_tmpfs APPEND PROPERTY ENVIRONMENT
             "DT_FAULT_LIB=$<TARGET_FILE:dt_fault_inject>")
set_tests_properties(mpi_storage_faults_tmpfs PROPERTIES SKIP_RETURN_CODE 77)

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

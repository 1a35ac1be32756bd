# Slurm tests (label slurm): a real local Slurm cluster (munge, slurmctld,
# slurmd from Debian's packages, installed by launch/slurm/start-cluster.sh
# when missing) runs launch/dtrain.sbatch. Needs root; skipped otherwise.
# Included from tests/CMakeLists.txt:  include(slurm/slurm_tests.cmake OPTIONAL)
#
# The fixture slurm_cluster starts 2 emulated nodes x 4 CPUs before the
# tests and stops them afterwards, whatever the tests did. The tests take
# one lock, so they never compete for the machine's cores with each other.
# The cluster uses TCP ports DT_SLURM_PORT .. +2 and +10 .. +11 on 127.0.0.1.
set(DT_SLURM_PORT 7017 CACHE STRING "First TCP port of the test Slurm clusters")
set(DT_SLURM_STATE ${CMAKE_CURRENT_BINARY_DIR}/slurm-cluster)
set(DT_SLURM_WORK ${CMAKE_CURRENT_BINARY_DIR}/slurm-work)
file(MAKE_DIRECTORY ${DT_SLURM_WORK})
set(DT_SLURM_DIR ${CMAKE_CURRENT_SOURCE_DIR}/slurm)
set(DT_SLURM_ENV
    "DTRAIN=$<TARGET_FILE:dtrain>" "DT_SOURCE=${PROJECT_SOURCE_DIR}" "DT_TEST_DATA=${DT_TEST_DATA}"
    "DT_SLURM_STATE=${DT_SLURM_STATE}" "DT_SLURM_WORK=${DT_SLURM_WORK}" ${DT_SANITIZE_ENV})

add_test(NAME slurm_cluster_start
         COMMAND bash ${DT_SLURM_DIR}/cluster.sh start ${DT_SLURM_STATE}
                 --nodes 2 --cpus 4 --port ${DT_SLURM_PORT})
add_test(NAME slurm_cluster_stop COMMAND bash ${DT_SLURM_DIR}/cluster.sh stop ${DT_SLURM_STATE})
set_tests_properties(slurm_cluster_start PROPERTIES FIXTURES_SETUP slurm_cluster)
set_tests_properties(slurm_cluster_stop PROPERTIES FIXTURES_CLEANUP slurm_cluster)
set_tests_properties(slurm_cluster_start slurm_cluster_stop PROPERTIES
                     LABELS slurm TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK dtrain_slurm)

# dt_slurm_test(NAME SCRIPT ARGS...): one test script against the cluster
function(dt_slurm_test name script)
  add_test(NAME slurm_${name} COMMAND bash ${DT_SLURM_DIR}/${script} ${ARGN})
  set_tests_properties(slurm_${name} PROPERTIES LABELS slurm TIMEOUT 300 SKIP_RETURN_CODE 77
                       FIXTURES_REQUIRED "slurm_cluster;test_data" RESOURCE_LOCK dtrain_slurm
                       ENVIRONMENT "${DT_SLURM_ENV}")
endfunction()

dt_slurm_test(job_2x2_srun job.sh 2 2 srun)
dt_slurm_test(job_2x2_mpirun job.sh 2 2 mpirun)
dt_slurm_test(requeue_logic requeue_logic.sh srun)   # the script's signal/requeue path, stand-in binary
# real dtrain: signal, checkpoint, requeue, resume; with dtrain's BLAS re-exec
# forced and off (the ranks must get the signal either way; sbatch passes the
# environment on)
dt_slurm_test(preempt_reexec preempt.sh)
set_property(TEST slurm_preempt_reexec APPEND PROPERTY ENVIRONMENT DTRAIN_BLAS_REEXEC=force)
dt_slurm_test(preempt_noreexec preempt.sh)
set_property(TEST slurm_preempt_noreexec APPEND PROPERTY ENVIRONMENT DTRAIN_BLAS_REEXEC=0)

# 4 ranks on one node, on a single-node cluster of its own (no emulation)
math(EXPR DT_SLURM_PORT_SINGLE "${DT_SLURM_PORT} + 10")
add_test(NAME slurm_job_1x4_single_node COMMAND bash ${DT_SLURM_DIR}/single_node.sh ${DT_SLURM_PORT_SINGLE})
set_tests_properties(slurm_job_1x4_single_node PROPERTIES LABELS slurm TIMEOUT 300 SKIP_RETURN_CODE 77
                     FIXTURES_REQUIRED test_data RESOURCE_LOCK dtrain_slurm ENVIRONMENT "${DT_SLURM_ENV}")

# ---- simulated cluster (label smpi) -----------------------------------------
# smpi_build configures and builds dtrain against SimGrid SMPI in
# <build>/tests/smpi-build (installing libsimgrid-dev when missing, as root);
# smpi_sweep runs a small simulated strong-scaling sweep through launch/scaling.
set(DT_SMPI_BUILD ${CMAKE_CURRENT_BINARY_DIR}/smpi-build)
add_test(NAME smpi_build COMMAND bash ${DT_SLURM_DIR}/smpi_build.sh ${PROJECT_SOURCE_DIR} ${DT_SMPI_BUILD})
set_tests_properties(smpi_build PROPERTIES FIXTURES_SETUP smpi_dtrain LABELS smpi TIMEOUT 900
                     SKIP_RETURN_CODE 77)
add_test(NAME smpi_sweep COMMAND bash ${DT_SLURM_DIR}/smpi_sweep.sh ${DT_SMPI_BUILD}/dtrain)
set_tests_properties(smpi_sweep PROPERTIES FIXTURES_REQUIRED "smpi_dtrain;test_data" LABELS smpi
                     TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "DT_SOURCE=${PROJECT_SOURCE_DIR};DT_TEST_DATA=${DT_TEST_DATA}")
# smpi_compute: a stall of one simulated rank, charged as measured (the
# cluster waits) and at the median (launch/scaling's default: it vanishes).
add_test(NAME smpi_compute COMMAND bash ${DT_SLURM_DIR}/smpi_compute.sh ${DT_SMPI_BUILD}/dtrain)
set_tests_properties(smpi_compute PROPERTIES FIXTURES_REQUIRED "smpi_dtrain;test_data" LABELS smpi
                     TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "DT_SOURCE=${PROJECT_SOURCE_DIR};DT_TEST_DATA=${DT_TEST_DATA}")
# smpi_reproducible: comm.reproducible gives the same bits at P = 1, 2, 16
# (sharded) and 8 to 128 (replicated) on the simulated cluster (20 s here; a P = 128 start took
# minutes while dtrain's verdicts used SimGrid's all-to-all nonblocking collectives).
add_test(NAME smpi_reproducible COMMAND bash ${DT_SLURM_DIR}/smpi_reproducible.sh ${DT_SMPI_BUILD}/dtrain)
set_tests_properties(smpi_reproducible PROPERTIES FIXTURES_REQUIRED "smpi_dtrain;test_data" LABELS smpi
                     TIMEOUT 900 SKIP_RETURN_CODE 77
                     ENVIRONMENT "DT_SOURCE=${PROJECT_SOURCE_DIR};DT_TEST_DATA=${DT_TEST_DATA}")

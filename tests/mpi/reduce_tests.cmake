# The reductions of reduce.h (tests/mpi/reduce_test.c) on 1 to 4 ranks, with
# every rank on one node, and with fake nodes of DTRAIN_RANKS_PER_NODE
# consecutive ranks: 2 nodes x 2 ranks (the hierarchical chain with both of
# its levels), 3 ranks as 2 + 1 (uneven: hierarchical falls back to mpi)
# and 3 and 4 nodes x 1 rank. Up to 16 nodes the hierarchical chain crosses
# the nodes by MPI_Alltoallv (direct); the *_tree tests run it on Open MPI's
# reduce-scatter, allreduce and allgather instead (DTRAIN_REDUCE_CROSS=tree).
add_executable(reduce_test ${CMAKE_CURRENT_LIST_DIR}/reduce_test.c)
target_link_libraries(reduce_test PRIVATE dt_comm)

function(dt_reduce_test name np ranks_per_node)
  add_test(NAME mpi_reduce_${name} COMMAND ${DT_MPIEXEC} -np ${np} $<TARGET_FILE:reduce_test>)
  set(env "${DT_SANITIZE_ENV}" ${ARGN})
  if(ranks_per_node)
    list(APPEND env "DTRAIN_RANKS_PER_NODE=${ranks_per_node}")
  endif()
  set_tests_properties(mpi_reduce_${name} PROPERTIES LABELS mpi TIMEOUT 600 ENVIRONMENT "${env}")
endfunction()

dt_reduce_test(np1 1 "")
dt_reduce_test(np2 2 "")
dt_reduce_test(np3 3 "")
dt_reduce_test(np4 4 "")
dt_reduce_test(nodes_2x2 4 2)
dt_reduce_test(nodes_2p1 3 2)
dt_reduce_test(nodes_3x1 3 1)
dt_reduce_test(nodes_4x1 4 1)
dt_reduce_test(nodes_2x2_tree 4 2 DTRAIN_REDUCE_CROSS=tree)
dt_reduce_test(nodes_3x1_tree 3 1 DTRAIN_REDUCE_CROSS=tree)

# The fixed-tree sums of reduce_exact.h (tests/mpi/reduce_exact_test.c): the
# bits of the 1-rank tree over 8 leaves on 1, 2, 4 and 8 ranks; 3 ranks are
# refused.
add_executable(reduce_exact_test ${CMAKE_CURRENT_LIST_DIR}/reduce_exact_test.c)
target_link_libraries(reduce_exact_test PRIVATE dt_comm)
foreach(np 1 2 3 4 8)
  add_test(NAME mpi_reduce_exact_np${np} COMMAND ${DT_MPIEXEC} -np ${np} $<TARGET_FILE:reduce_exact_test>)
  set_tests_properties(mpi_reduce_exact_np${np} PROPERTIES LABELS mpi TIMEOUT 600
                       ENVIRONMENT "${DT_SANITIZE_ENV}")
endforeach()

# The install tree: cmake --install into a temporary prefix, then check
# bin/dtrain, share/dtrain/configs and the launch scripts
# (tests/cli/install_tree.sh).
string(REPLACE ";" " " DT_INSTALL_MPIEXEC "${DT_MPIEXEC}")
add_test(NAME install_tree
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/install_tree.sh ${CMAKE_BINARY_DIR}
                 ${CMAKE_SOURCE_DIR} ${PROJECT_VERSION})
set_tests_properties(install_tree PROPERTIES LABELS "cli;install"
  FIXTURES_REQUIRED test_data TIMEOUT 240
  ENVIRONMENT "MPIEXEC=${DT_INSTALL_MPIEXEC};DT_TEST_DATA=${DT_TEST_DATA};${DT_SANITIZE_ENV}")

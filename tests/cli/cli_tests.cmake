# CLI tests: every tests/cli/cases/*.yaml on 1 and on 2 ranks (run_case.sh
# says what each checks).
file(GLOB DT_CLI_CASES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cli/cases/*.yaml)
string(REPLACE ";" " " DT_MPIEXEC_STR "${DT_MPIEXEC}")
foreach(case_path ${DT_CLI_CASES})
  get_filename_component(case_name ${case_path} NAME_WE)
  foreach(np 1 2)
    add_test(NAME cli_${case_name}_np${np}
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/run_case.sh ${np} ${case_path})
    set_tests_properties(cli_${case_name}_np${np} PROPERTIES LABELS cli
      FIXTURES_REQUIRED test_data TIMEOUT 90
      ENVIRONMENT "DTRAIN=$<TARGET_FILE:dtrain>;MPIEXEC=${DT_MPIEXEC_STR};DT_TEST_DATA=${DT_TEST_DATA};${DT_SANITIZE_ENV}")
  endforeach()
endforeach()

# The weights forms end to end (tests/cli/weights.sh): the export at the end
# of a run, --export, --evaluate, model.init_from, on 1 and on 2 ranks.
foreach(np 1 2)
  add_test(NAME cli_weights_np${np} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/weights.sh ${np})
  set_tests_properties(cli_weights_np${np} PROPERTIES LABELS cli FIXTURES_REQUIRED test_data
    TIMEOUT 600 SKIP_RETURN_CODE 77
    ENVIRONMENT "DTRAIN=$<TARGET_FILE:dtrain>;MPIEXEC=${DT_MPIEXEC_STR};DT_TEST_DATA=${DT_TEST_DATA};${DT_SANITIZE_ENV};DT_FAULT_LIB=$<TARGET_FILE:dt_fault_inject>")
endforeach()

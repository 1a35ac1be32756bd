# PyTorch cross-checks (label torch): the same model from the same weights,
# trained by dtrain and by PyTorch on the same batches, must agree on every
# update's loss; dtrain's exported weights must give dtrain's test accuracy
# in PyTorch (tests/torch/crosscheck.py). SKIP (77) without python3-torch.
string(REPLACE ";" " " DT_MPIEXEC_STR "${DT_MPIEXEC}")
foreach(combo "mlp;momentum;1" "mlp;adam;2" "lenet;momentum;2" "lenet;adam;1")
  list(GET combo 0 model)
  list(GET combo 1 optimizer)
  list(GET combo 2 np)
  set(name torch_crosscheck_${model}_${optimizer}_np${np})
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/torch/run.sh ${model} ${optimizer} ${np})
  set_tests_properties(${name} PROPERTIES LABELS torch TIMEOUT 600 SKIP_RETURN_CODE 77
    ENVIRONMENT "DTRAIN=$<TARGET_FILE:dtrain>;MPIEXEC=${DT_MPIEXEC_STR};${DT_SANITIZE_ENV}")
endforeach()

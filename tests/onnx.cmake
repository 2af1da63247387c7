# ONNX export (io/onnx.hpp, issue 14): unit-onnx links xfer::onnx; onnx-export writes the models,
# a random input and xfer's eval logits, onnx-runtime runs them in ONNX Runtime (PyPI wheel) and
# compares. Without onnxruntime the check prints XFER_ONNX_SKIPPED (reported as skipped), unless
# XFER_REQUIRE_ONNXRUNTIME=1 (or XFER_REQUIRE_TORCH=1, as in CI) makes it a failure.
set(XFER_ONNX_PYTHON /usr/bin/python3 CACHE FILEPATH "Python interpreter with numpy + onnxruntime for the ONNX Runtime check")
if(TARGET unit-onnx)
  target_link_libraries(unit-onnx PRIVATE xfer::onnx)
  set_tests_properties(unit-onnx PROPERTIES TIMEOUT 300)
  add_test(NAME onnx-export COMMAND unit-onnx "[.onnx-export]")
  set_tests_properties(onnx-export PROPERTIES FIXTURES_SETUP onnx_exported TIMEOUT 300)
  add_test(NAME onnx-runtime COMMAND ${XFER_ONNX_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/onnx_runtime_check.py
    ${XFER_TEST_TMP}/onnx-runtime)
  set_tests_properties(onnx-runtime PROPERTIES FIXTURES_REQUIRED onnx_exported SKIP_REGULAR_EXPRESSION "XFER_ONNX_SKIPPED"
    TIMEOUT 300)
endif()

# examples/fewshot end to end on a generated image folder: every --method, and the clear errors for
# bad episode setups (tests/fewshot_e2e.sh).
if(TARGET fewshot)
  add_test(NAME e2e-fewshot COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fewshot_e2e.sh $<TARGET_FILE:fewshot>
    ${XFER_TEST_TMP}/fewshot_e2e)
  set_tests_properties(e2e-fewshot PROPERTIES TIMEOUT 300)
endif()

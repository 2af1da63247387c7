# pretrain -> finetune -> predict end to end (only when the examples are built).
if(TARGET finetune AND TARGET pretrain AND TARGET predict)
  add_executable(e2e-transfer e2e-transfer.cpp)
  target_link_libraries(e2e-transfer PRIVATE xfer_test_main Catch2::Catch2)
  target_compile_definitions(e2e-transfer PRIVATE XFER_TEST_TMP="${XFER_TEST_TMP}"
    FINETUNE_EXE="$<TARGET_FILE:finetune>" PRETRAIN_EXE="$<TARGET_FILE:pretrain>" PREDICT_EXE="$<TARGET_FILE:predict>")
  xfer_program_options(e2e-transfer)
  add_dependencies(e2e-transfer finetune pretrain predict)
  add_test(NAME e2e-transfer COMMAND e2e-transfer)
  set_tests_properties(e2e-transfer PROPERTIES TIMEOUT 900)
endif()

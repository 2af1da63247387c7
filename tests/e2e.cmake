# End-to-end tests that drive the example programs (only when the examples are built).
if(TARGET finetune_cifar10)
  add_executable(e2e-finetune e2e-finetune.cpp)
  target_link_libraries(e2e-finetune PRIVATE xfer_test_main Catch2::Catch2)
  target_compile_definitions(e2e-finetune PRIVATE XFER_TEST_TMP="${XFER_TEST_TMP}"
    FINETUNE_EXE="$<TARGET_FILE:finetune_cifar10>")
  xfer_program_options(e2e-finetune)
  add_dependencies(e2e-finetune finetune_cifar10)
  add_test(NAME e2e-finetune COMMAND e2e-finetune)
  set_tests_properties(e2e-finetune PROPERTIES TIMEOUT 900)
endif()

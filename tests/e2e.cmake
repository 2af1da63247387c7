# End-to-end tests that drive the example programs (only when the examples are built).
if(TARGET finetune_cifar10)
  # LD_PRELOAD library that kills a program at its n-th rename to a given name (crash tests).
  add_library(xfer_crash_on_rename SHARED crash_on_rename.cpp)
  target_link_libraries(xfer_crash_on_rename PRIVATE ${CMAKE_DL_LIBS})
  add_executable(e2e-finetune e2e-finetune.cpp)
  target_link_libraries(e2e-finetune PRIVATE xfer_test_main Catch2::Catch2)
  target_compile_definitions(e2e-finetune PRIVATE XFER_TEST_TMP="${XFER_TEST_TMP}"
    FINETUNE_EXE="$<TARGET_FILE:finetune_cifar10>"
    CRASH_ON_RENAME_LIB="$<TARGET_FILE:xfer_crash_on_rename>")
  xfer_program_options(e2e-finetune)
  add_dependencies(e2e-finetune finetune_cifar10 xfer_crash_on_rename)
  add_test(NAME e2e-finetune COMMAND e2e-finetune)
  set_tests_properties(e2e-finetune PROPERTIES TIMEOUT 900)
endif()

# The zoo of issue 14 against torchvision (tests/unit-zoo.cpp): gen_zoo.py writes torch-made
# weights and references for resnet50, mobilenet_v3_large/small and efficientnet_b0 into
# <build>/parity-zoo (~150 MB, regenerated only when the generator or torch changes; without torch
# it leaves TORCH_MISSING and the check prints XFER_PARITY_SKIPPED), then the hidden Catch2 case
# [.zoo-parity] compares eval logits (32 and 224 px, plain and BN-folded) and a float64 train step.
# model_summary's totals equal torchvision's for each zoo model.
set(XFER_TORCH_PYTHON /usr/bin/python3 CACHE FILEPATH "Python interpreter with torch + torchvision for the parity fixtures")
if(DEFINED XFER_UNIT_PROGRAM_unit-zoo)
  add_test(NAME zoo-parity-fixtures COMMAND ${XFER_TORCH_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/gen_zoo.py
    generate ${CMAKE_BINARY_DIR}/parity-zoo)
  set_tests_properties(zoo-parity-fixtures PROPERTIES FIXTURES_SETUP parity_zoo TIMEOUT 600
    SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")
  add_test(NAME zoo-parity COMMAND ${XFER_UNIT_PROGRAM_unit-zoo} "[.zoo-parity]" --warn NoTests)
  set_tests_properties(zoo-parity PROPERTIES FIXTURES_REQUIRED parity_zoo SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED"
    TIMEOUT 300)
endif()
if(XFER_BUILD_EXAMPLES)
  foreach(pair "resnet50=25557032" "mobilenet_v3_large=5483032" "mobilenet_v3_small=2542856" "efficientnet_b0=5288548")
    string(REPLACE "=" ";" kv ${pair})
    list(GET kv 0 model)
    list(GET kv 1 total)
    add_test(NAME model_summary-${model} COMMAND ${CMAKE_COMMAND}
      "-DCMD=$<TARGET_FILE:model_summary>;--model;${model};--num-classes;1000;--json" "-DEXPECT=total==${total}"
      -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_json.cmake)
  endforeach()
endif()

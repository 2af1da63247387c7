# PyTorch parity (issue 3). The reference data (torchvision resnet18 / vgg11_bn weights, inputs,
# logits, float64 train-step gradients: ~1.3 GB) is generated at test time, never committed:
# gen_parity.py writes it under <build>/parity and skips the work when its stamp is current. CI
# installs python3-torch (cmake/debian-packages.txt); without torch the generator leaves a
# TORCH_MISSING marker and the dependent tests print XFER_PARITY_SKIPPED, reported as skipped.
set(XFER_TORCH_PYTHON /usr/bin/python3 CACHE FILEPATH "Python interpreter with torch + torchvision for the parity fixtures")
set(XFER_PARITY_DIR "${CMAKE_BINARY_DIR}/parity")
set(XFER_PARITY_GEN "${CMAKE_CURRENT_SOURCE_DIR}/fixtures/gen_parity.py")

add_test(NAME parity-fixtures COMMAND ${XFER_TORCH_PYTHON} ${XFER_PARITY_GEN} generate ${XFER_PARITY_DIR})
set_tests_properties(parity-fixtures PROPERTIES FIXTURES_SETUP parity TIMEOUT 600 SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")

set_tests_properties(unit-parity PROPERTIES FIXTURES_REQUIRED parity SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED"
  TIMEOUT 300)

# Round trip: xfer writes -> torch loads strictly, checks every tensor, writes its state_dict ->
# xfer loads that and must get identical tensors.
set(XFER_RT_DIR "${XFER_TEST_TMP}/roundtrip")
add_test(NAME parity-roundtrip-save COMMAND unit-parity "[.roundtrip-save]")
set_tests_properties(parity-roundtrip-save PROPERTIES FIXTURES_SETUP roundtrip_saved)
add_test(NAME parity-roundtrip-torch COMMAND ${XFER_TORCH_PYTHON} ${XFER_PARITY_GEN} roundtrip
  ${XFER_RT_DIR}/xfer_resnet18.safetensors ${XFER_RT_DIR}/torch_resnet18.safetensors)
set_tests_properties(parity-roundtrip-torch PROPERTIES FIXTURES_REQUIRED roundtrip_saved FIXTURES_SETUP roundtrip_torch
  SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")
add_test(NAME parity-roundtrip-load COMMAND unit-parity "[.roundtrip-load]")
set_tests_properties(parity-roundtrip-load PROPERTIES FIXTURES_REQUIRED roundtrip_torch
  SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")

# examples/classify --input-tensor on a 10-class resnet18 against torch's eval logits.
if(XFER_BUILD_EXAMPLES)
  add_test(NAME parity-classify COMMAND /bin/sh -c
    "test -e '${XFER_PARITY_DIR}/TORCH_MISSING' && echo XFER_PARITY_SKIPPED && exit 0; \
'$<TARGET_FILE:classify>' --weights '${XFER_PARITY_DIR}/classify_resnet18_c10.safetensors' --model resnet18 \
--num-classes 10 --input-tensor '${XFER_PARITY_DIR}/classify_input.safetensors' \
--output '${XFER_TEST_TMP}/classify_logits.safetensors' && \
'${XFER_TORCH_PYTHON}' '${XFER_PARITY_GEN}' compare '${XFER_TEST_TMP}/classify_logits.safetensors' \
'${XFER_PARITY_DIR}/classify_ref.safetensors' logits 1e-4")
  set_tests_properties(parity-classify PROPERTIES FIXTURES_REQUIRED parity SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")
endif()
if(XFER_BUILD_EXAMPLES)
  # classify --image (decode, resize 256, crop 224, normalise) against torchvision's float pipeline.
  add_test(NAME parity-classify-image COMMAND ${XFER_TORCH_PYTHON} ${XFER_PARITY_GEN} classify-image
    $<TARGET_FILE:classify> ${XFER_PARITY_DIR}/classify_resnet18_c10.safetensors ${XFER_TEST_TMP}/classify_image)
  set_tests_properties(parity-classify-image PROPERTIES FIXTURES_REQUIRED parity SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")
endif()
if(XFER_BUILD_EXAMPLES)
  # examples/pth_to_safetensors.py on a DataParallel-style .pth without num_batches_tracked, then
  # classify --input-tensor on the converted file against torch's logits.
  add_test(NAME parity-pth-convert COMMAND ${XFER_TORCH_PYTHON} ${XFER_PARITY_GEN} pth-convert
    $<TARGET_FILE:classify> ${XFER_TEST_TMP}/pth_convert)
  set_tests_properties(parity-pth-convert PROPERTIES SKIP_REGULAR_EXPRESSION "XFER_PARITY_SKIPPED")
endif()

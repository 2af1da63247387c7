# Short runs of the example and benchmark programs, each checking a number in the JSON line the
# program prints last (tests/scripts/expect_json.cmake): the program runs AND computes what it should.
set(XFER_EXPECT_JSON ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_json.cmake)
function(xfer_program_test name expect)
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} "-DCMD=${ARGN}" "-DEXPECT=${expect}" -P ${XFER_EXPECT_JSON})
endfunction()

if(XFER_BUILD_BENCHMARKS)
  # Every mode of bench_models on a fixed batch of 8 (one thread: robust on a busy machine): the
  # training modes must learn, inference must be deterministic (the same loss every step).
  # Measured 2026-12-03, first -> last loss over 6 steps: resnet18 train 2.35 -> 0.012, frozen
  # 2.22 -> 1.48; vgg11 train 2.37 -> 0.036, frozen 2.30 -> 2.03.
  set(frozen_limit_resnet18 2.0)
  set(frozen_limit_vgg11 2.2)
  foreach(model resnet18 vgg11)
    set(args --model ${model} --batch 8 --warmup 0 --threads 1 --json)
    xfer_program_test(bench_models-${model}-train "loss_last<loss_first;loss_last<0.5"
      $<TARGET_FILE:bench_models> ${args} --mode train --steps 6)
    xfer_program_test(bench_models-${model}-frozen "loss_last<loss_first;loss_last<${frozen_limit_${model}}"
      $<TARGET_FILE:bench_models> ${args} --mode frozen --steps 6)
    xfer_program_test(bench_models-${model}-infer "loss_last==loss_first"
      $<TARGET_FILE:bench_models> ${args} --mode infer --steps 3)
  endforeach()
endif()

if(XFER_BUILD_EXAMPLES)
  # torchvision's resnet18 has 11,689,512 parameters; a frozen backbone leaves fc (512*1000 + 1000).
  xfer_program_test(model_summary "total==11689512;trainable==513000" $<TARGET_FILE:model_summary> --model resnet18
    --num-classes 1000 --freeze-backbone --json)
  # A short meta-training (2000 iterations, ~10 s): adaptation lowers the query MSE of new tasks, and
  # second-order MAML after one step beats the jointly pretrained baseline after one step. Measured
  # 2026-12-03 (MSE before / 1 step / 10 steps): second order 3.07 / 1.44 / 0.72 (baseline 1 step
  # 2.38), first order 3.02 / 1.81 / 1.16.
  set(args --iterations 2000 --meta-batch 5 --eval-tasks 50 --threads 1 --json)
  xfer_program_test(maml_sinusoid "mse_1step<mse_pre;mse_10step<mse_1step;mse_1step<baseline_1step"
    $<TARGET_FILE:maml_sinusoid> ${args})
  xfer_program_test(maml_sinusoid-first-order "mse_1step<mse_pre;mse_10step<mse_1step"
    $<TARGET_FILE:maml_sinusoid> --order first ${args})
endif()

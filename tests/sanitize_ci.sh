#!/usr/bin/env bash
# CI step (issue 7): builds a reduced test suite with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DXFER_SANITIZE=ON: -fsanitize=address,undefined -fno-sanitize-recover=all) at -O1 in build-san
# and runs it; any sanitizer report, leak or failure fails the step.
# The set covers every reader of untrusted files (safetensors, checkpoints, CIFAR-10,
# images, ImageFolder), the tensor/layer/loss/optimizer core they feed and the fuzz regressions.
# Left out to keep .ci/run under ~30 min on 2 cores (a sanitized -O1 build costs 10-60 CPU-seconds
# per test program; the tests themselves run in ~35 s together): unit-parity and the parity-* tests
# (torch fixtures, 1.3 GB to generate), e2e-finetune (needs the examples built sanitized too),
# consumer_find_package (an install test, nothing to sanitize).
#   SAN_BUILD_DIR (default build-san)   SAN_TESTS (override the list)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SAN_BUILD_DIR:-build-san}
tests=${SAN_TESTS:-unit-fuzz-regressions unit-safetensors unit-data-datasets unit-data-loader unit-data-transforms
  unit-tensor unit-layers unit-loss unit-optim unit-schedulers unit-train-utils unit-kernels-conv unit-models unit-episodes
  unit-maml unit-training}

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" \
  -DXFER_SANITIZE=ON -DXFER_BUILD_EXAMPLES=OFF -DXFER_BUILD_BENCHMARKS=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j2 --target $tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:check_initialization_order=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" -R "^($(echo $tests | tr ' ' '|'))\$" --output-on-failure -j2 --timeout 600

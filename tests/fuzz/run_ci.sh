#!/usr/bin/env bash
# CI step (issue 7): builds the libFuzzer harnesses with clang in build-fuzz and runs each one for a
# bounded time on the committed seed corpus (tests/fuzz/corpus/<harness>). Fails on any crash,
# leak, timeout, out-of-memory or sanitizer report, and leaves the reproducer under $FUZZ_OUT.
# Prints executions per second and total executions per harness at the end.
#   FUZZ_SECONDS (default 45)   seconds per harness
#   FUZZ_BUILD_DIR (build-fuzz) build directory
#   FUZZ_OUT (build-fuzz/fuzz-out)  new corpus entries, logs and crash artifacts
#   FUZZ_HARNESSES              subset to run, e.g. "safetensors image"
#   FUZZ_SEED (default 1)       libFuzzer's random seed
#   FUZZ_RUNS (default: per harness, below; 0 = unlimited)  executions per harness
# CI is reproducible: with a fixed seed and a fixed number of executions libFuzzer replays the same
# input sequence on every machine (a slower machine stops at FUZZ_SECONDS on a prefix of it), so a
# green run here is a green run in CI; change FUZZ_SEED to explore further by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
secs=${FUZZ_SECONDS:-45}
harnesses=${FUZZ_HARNESSES:-safetensors checkpoint cifar10 image}
out=${FUZZ_OUT:-$build/fuzz-out}
seed=${FUZZ_SEED:-1}
# About 45 s each on the 2-core development machine.
default_runs() {
  case "$1" in
    safetensors) echo 200000 ;;
    checkpoint) echo 90000 ;;
    cifar10) echo 250000 ;;
    image) echo 200000 ;;
    *) echo 0 ;;
  esac
}

cmake -S tests/fuzz -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2
mkdir -p "$out"
out=$(cd "$out" && pwd)

summary=()
status=0
for h in $harnesses; do
  rm -rf "$out/$h" "$out/crash-$h-"*
  mkdir -p "$out/$h"  # new inputs land here; the committed seeds are only read
  runs=${FUZZ_RUNS:-$(default_runs "$h")}
  args=(-seed="$seed" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$out/crash-$h-")
  [[ "$runs" != 0 ]] && args+=(-runs="$runs")
  [[ -f tests/fuzz/$h.dict ]] && args+=(-dict="tests/fuzz/$h.dict")
  echo "== fuzz_$h: seed $seed, ${runs} runs (0: unlimited), at most ${secs}s"
  rc=0
  OMP_NUM_THREADS=1 XFER_FUZZ_TMP="$out" "$build/fuzz_$h" "${args[@]}" "$out/$h" "tests/fuzz/corpus/$h" \
    >"$out/$h.log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$h.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$h.log" | tail -1)
  if [[ $rc -ne 0 ]]; then
    status=1
    echo "fuzz_$h FAILED (exit $rc); last lines of $out/$h.log:"
    tail -n 60 "$out/$h.log"
    ls "$out"/crash-"$h"-* 2>/dev/null || true
  fi
  summary+=("$(printf '%-12s %s  %8s exec/s  %10s executions  %s new corpus files' "$h" \
    "$([[ $rc -eq 0 ]] && echo ok || echo FAIL)" "${rate:-?}" "${execs:-?}" "$(ls "$out/$h" | wc -l)")")
done
echo "== fuzz summary (${secs}s each)"
printf '%s\n' "${summary[@]}"
exit $status

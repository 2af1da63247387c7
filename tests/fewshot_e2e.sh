#!/bin/bash
# examples/fewshot end to end on a tiny generated image folder (random 16x16 PPMs, 6 classes of 8):
# every method runs and prints its JSON line; bad setups fail with a clear one-line error.
# Usage: fewshot_e2e.sh <fewshot executable> <scratch dir>
set -u
exe=$1; dir=$2
rm -rf "$dir"; mkdir -p "$dir/data" "$dir/mixed"
ppm() {  # ppm FILE SIZE SEED: a deterministic pseudo-random SIZExSIZE RGB image
  printf 'P6\n%d %d\n255\n' "$2" "$2" > "$1"
  awk -v n=$(( $2 * $2 * 3 )) -v s="$3" 'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%c", int(rand() * 256) }' >> "$1"
}
for c in 0 1 2 3 4 5; do
  mkdir -p "$dir/data/c$c" "$dir/mixed/c$c"
  for i in 0 1 2 3 4 5 6 7; do ppm "$dir/data/c$c/$i.ppm" 16 $((c * 100 + i)); cp "$dir/data/c$c/$i.ppm" "$dir/mixed/c$c/"; done
done
ppm "$dir/mixed/c2/odd.ppm" 12 7
fail=0
run=(--train-classes c0,c1,c2 --train-queries 2 --iterations 3 --meta-batch 2 --batch 8 --inner-steps 2 --test-steps 2
     --finetune-steps 5 --threads 1 --json)
common=(--data "$dir/data" --test-classes c3,c4,c5 --ways 3 --queries 2 "${run[@]}")
for m in maml mamlpp anil protonet baseline baselinepp; do
  out=$("$exe" --method $m "${common[@]}" --episodes 5 2>/dev/null | tail -1)
  if [[ "$out" != *"\"episodes\":5"* || "$out" != *"\"method\":\"$m\""* || "$out" != *"\"acc\":"* ]]; then
    echo "FAIL $m: last line '$out'"; fail=1
  else echo "ok $m: $out"; fi
done
for m in protonet baseline anil; do  # the ResNet-18 backbone (CIFAR stem) on the same data
  out=$("$exe" --method $m --backbone resnet18 "${common[@]}" --episodes 2 2>/dev/null | tail -1)
  [[ "$out" == *"\"episodes\":2"* && "$out" == *"\"backbone\":\"resnet18\""* ]] && echo "ok resnet18 $m" || { echo "FAIL resnet18 $m: $out"; fail=1; }
done
expect_error() {  # expect_error "message fragment" args...
  local want=$1; shift
  local err; err=$("$exe" "$@" 2>&1 >/dev/null); local rc=$?
  if [[ $rc -ne 1 || "$err" != *"$want"* || $(printf '%s\n' "$err" | grep -c .) -ne 1 ]]; then
    echo "FAIL (rc $rc) expected one-line error containing '$want', got: $err"; fail=1
  else echo "ok error: $err"; fi
}
expect_error "shots + queries = 4 + 5 = 9 are needed" --method protonet --data "$dir/data" --test-classes c3,c4,c5 \
  --ways 3 --shots 4 --queries 5 "${run[@]}"
expect_error "4-way episodes need at least 4 classes, but only 3 are available" --method protonet --data "$dir/data" \
  --test-classes c3,c4,c5 --ways 4 --queries 2 "${run[@]}"
expect_error "images have different sizes" --method baseline "${common[@]/$dir\/data/$dir/mixed}"
expect_error "is not a folder of the dataset" --method maml --data "$dir/data" --test-classes c3,c4,nope --ways 3 "${run[@]}"
# --image-size resizes the odd image; --test-data takes the meta-test episodes from another folder.
out=$("$exe" --method protonet "${common[@]/$dir\/data/$dir/mixed}" --image-size 16 --episodes 4 2>/dev/null | tail -1)
[[ "$out" == *"\"episodes\":4"* ]] && echo "ok --image-size" || { echo "FAIL --image-size: $out"; fail=1; }
out=$("$exe" --method protonet "${common[@]}" --test-data "$dir/mixed" --image-size 16 --episodes 4 2>/dev/null | tail -1)
[[ "$out" == *"\"episodes\":4"* ]] && echo "ok --test-data" || { echo "FAIL --test-data: $out"; fail=1; }
exit $fail

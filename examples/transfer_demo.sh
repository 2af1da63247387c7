#!/bin/sh
# transfer_demo.sh: transfer learning you can see, on the CIFAR-10 training JPEGs.
#   1. pretrain ResNet-18 on the 5 source classes airplane, automobile, bird, cat, deer;
#   2. fine-tune it on the 5 target classes dog, frog, horse, ship, truck with N labelled images
#      per class;
#   3. run the same fine-tune (same images, epochs, batch) from random weights;
#   4. print both accuracies on the held-out target images (which pretraining never saw) and the gain.
#
#   examples/transfer_demo.sh [DATA] [OUT]       (env: BIN, LABELS, METHOD, PRETRAIN_EPOCHS, PRETRAIN_LIMIT,
#                                                  EPOCHS, THREADS)
# METHOD=rotation pretrains by rotation prediction on unlabelled images of all 10 classes instead
# (the held-out images excluded). Every program takes the same --val-fraction, so the held-out split
# by file name is the same in all steps.
set -eu
DATA=${1:-/tmp/cifar10/train}
OUT=${2:-runs/transfer}
BIN=${BIN:-build/examples}
LABELS=${LABELS:-100}
METHOD=${METHOD:-supervised}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-2}
PRETRAIN_LIMIT=${PRETRAIN_LIMIT:-5000}
EPOCHS=${EPOCHS:-10}
THREADS=${THREADS:-0}
VAL=0.02
SOURCE=airplane,automobile,bird,cat,deer
TARGET=dog,frog,horse,ship,truck
COMMON="--threads $THREADS --val-fraction $VAL --no-progress"

mkdir -p "$OUT"
if [ "$METHOD" = supervised ]; then
  "$BIN/pretrain" --data "$DATA" --classes $SOURCE --method supervised --epochs "$PRETRAIN_EPOCHS" \
    --limit "$PRETRAIN_LIMIT" $COMMON --out "$OUT/source"
  WEIGHTS="$OUT/source/best.safetensors"
else
  "$BIN/pretrain" --data "$DATA" --method "$METHOD" --epochs "$PRETRAIN_EPOCHS" --limit "$PRETRAIN_LIMIT" \
    $COMMON --out "$OUT/source"
  WEIGHTS="$OUT/source/last.safetensors"
fi

FT="--data $DATA --classes $TARGET --labels-per-class $LABELS --epochs $EPOCHS --batch 32 $COMMON --json"
"$BIN/finetune" $FT --weights "$WEIGHTS" --out "$OUT/pretrained" | tee "$OUT/pretrained.log"
"$BIN/finetune" $FT --out "$OUT/scratch" | tee "$OUT/scratch.log"

acc() { tail -n 1 "$1" | sed 's/.*"best_val_acc":\([0-9.eE+-]*\).*/\1/'; }
awk -v p="$(acc "$OUT/pretrained.log")" -v s="$(acc "$OUT/scratch.log")" -v m="$METHOD" -v n="$LABELS" 'BEGIN {
  printf "held-out target accuracy, %d labels/class: %s-pretrained %.2f%%, from scratch %.2f%%, gain %+.2f points\n",
         n, m, 100 * p, 100 * s, 100 * (p - s) }'

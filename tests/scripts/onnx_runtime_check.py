#!/usr/bin/env python3
"""Runs the models unit-onnx "[.onnx-export]" wrote (DIR/cases.json) in ONNX Runtime, at batch 3 and
batch 1, and compares the logits with xfer's eval logits on the same input.

Usage: onnx_runtime_check.py DIR [--tol T]
Passes when max |ort - xfer| <= the case's "tolerance" (or T) for every model and batch. Without
onnxruntime it prints XFER_ONNX_SKIPPED (ctest: skipped), or fails when XFER_REQUIRE_ONNXRUNTIME=1
or XFER_REQUIRE_TORCH=1 (CI) says it must be there.
"""
import json
import os
import sys

import numpy as np

def main():
    args = sys.argv[1:]
    tol = None
    if "--tol" in args:
        i = args.index("--tol")
        tol = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    d = args[0]
    try:
        import onnxruntime as ort
    except ImportError as e:
        if os.environ.get("XFER_REQUIRE_ONNXRUNTIME") == "1" or os.environ.get("XFER_REQUIRE_TORCH") == "1":
            print(f"onnx_runtime_check: cannot import onnxruntime ({e}) but XFER_REQUIRE_ONNXRUNTIME/XFER_REQUIRE_TORCH is set")
            return 1
        print(f"XFER_ONNX_SKIPPED: onnxruntime is not installed ({e}); pip install onnxruntime")
        return 0
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    if not cases:
        print("onnx_runtime_check: no cases in", d)
        return 1
    failed = 0
    print(f"onnxruntime {ort.__version__}")
    for c in cases:
        name = c["name"]
        x = np.fromfile(os.path.join(d, name + "_input.f32"), dtype="<f4").reshape(c["input_shape"])
        sess = ort.InferenceSession(os.path.join(d, name + ".onnx"), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        if inp.shape[0] != "N":
            print(f"{name}: the batch dimension is {inp.shape[0]!r}, expected the symbolic 'N'")
            failed += 1
        for b in (3, 1):
            ref = np.fromfile(os.path.join(d, f"{name}_logits{b}.f32"), dtype="<f4")
            ref = ref.reshape([b] + list(c["logits_shape"][1:]))
            (got,) = sess.run(None, {inp.name: x[:b]})
            if got.shape != ref.shape:
                print(f"{name} batch {b}: ONNX Runtime output shape {got.shape}, xfer {ref.shape}")
                failed += 1
                continue
            diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
            limit = tol if tol is not None else c["tolerance"]
            ok = diff <= limit
            failed += not ok
            print(f"{name:22s} batch {b}: max |ort - xfer| = {diff:.2e} (tolerance {limit:g}, max |logit| "
                  f"{float(np.max(np.abs(ref))):.3g}) {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

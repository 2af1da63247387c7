#!/usr/bin/env python3
"""Manual end-to-end check of the ONNX export at 224 px (too heavy for ctest: VGG files are 0.5 GB):
torchvision model with random weights and random BatchNorm statistics -> safetensors ->
examples/export_onnx -> ONNX Runtime, against torchvision's eval logits on the same input (batch 3).

Usage: /usr/bin/python3 tests/scripts/onnx_torchvision_check.py build/examples/export_onnx OUTDIR [model ...]
(models: vgg11, vgg13, vgg16, resnet18, resnet34; default vgg11 resnet34 vgg16)
"""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
from pth_to_safetensors import write_safetensors  # noqa: E402

CTORS = {"vgg11": torchvision.models.vgg11_bn, "vgg13": torchvision.models.vgg13_bn, "vgg16": torchvision.models.vgg16_bn,
         "resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exe, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name in sys.argv[3:] or ["vgg11", "resnet34", "vgg16"]:
        m = CTORS[name](num_classes=10).eval()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.normal_(0, 0.2)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.2)
        weights, onnx_file = os.path.join(out, name + ".safetensors"), os.path.join(out, name + ".onnx")
        write_safetensors(weights, dict(m.state_dict()))
        subprocess.run([exe, "--model", name, "--num-classes", "10", "--weights", weights, "--image-size", "224",
                        "--out", onnx_file], check=True)
        x = torch.randn(3, 3, 224, 224)
        with torch.no_grad():
            ref = m(x).double().numpy()
        (y,) = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
        print(f"{name} 224 px batch 3: max |ort - torchvision| = {np.abs(y - ref).max():.2e} (max |logit| {np.abs(ref).max():.3g})")


if __name__ == "__main__":
    main()

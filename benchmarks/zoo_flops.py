#!/usr/bin/python3
"""Multiply-adds of the zoo models at 224x224 (batch 1), counted from torchvision's modules.

Usage: /usr/bin/python3 benchmarks/zoo_flops.py [MODEL ...]
Counts every Conv2d (output elements x in_channels / groups x kernel area) and Linear (in x out)
with forward hooks; BN, activations, pooling and adds are left out (as in torchvision's GFLOPS
column, which these figures reproduce). FLOPs = 2 x multiply-adds.
"""
import sys

import torch
import torchvision

MODELS = sys.argv[1:] or ["resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small",
                          "efficientnet_b0", "vgg11_bn", "vgg13_bn", "vgg16_bn"]


def macs(name):
    model = getattr(torchvision.models, name)().eval()
    total = [0]

    def conv(m, inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inp, out):
        total[0] += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return total[0], sum(p.numel() for p in model.parameters())


print(f"{'model':<20} {'parameters':>12} {'GMACs@224':>10} {'GFLOPs@224':>11}")
for name in MODELS:
    n, params = macs(name)
    print(f"{name:<20} {params:>12,} {n / 1e9:>10.3f} {2 * n / 1e9:>11.3f}")

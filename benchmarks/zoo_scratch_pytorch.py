#!/usr/bin/env python3
"""The PyTorch side of a from-scratch check: train a torchvision model from random weights on a
few CIFAR-10 JPEGs (32 px, Adam 1e-3, wd 1e-4, batch 64, no augmentation) and print, per epoch,
the validation accuracy in eval mode (running BN statistics) and in train mode (batch statistics).

Why: MobileNetV3's BatchNorm momentum is 0.01, so its running statistics need a few hundred steps
to follow the weights; a short run from scratch evaluates at chance in eval mode in PyTorch too.

  python3 benchmarks/zoo_scratch_pytorch.py --data /tmp/cifar10/train --model mobilenet_v3_small
"""
import argparse
import glob
import os
import random

import numpy as np
import torch
import torchvision
from PIL import Image

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--data", required=True, help="ImageFolder root root/<class>/<image>")
p.add_argument("--model", default="mobilenet_v3_small")
p.add_argument("--train", type=int, default=4000, help="training images (seeded shuffle)")
p.add_argument("--val", type=int, default=2000, help="validation images (disjoint)")
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
random.seed(0)
classes = sorted(d for d in glob.glob(os.path.join(a.data, "*")) if os.path.isdir(d))
files = [(f, i) for i, c in enumerate(classes) for f in sorted(glob.glob(os.path.join(c, "*")))]
random.shuffle(files)
mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])


def load(items):
    x = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f, _ in items])
    x = torch.tensor((x - mean) / std, dtype=torch.float32).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([label for _, label in items])


xt, yt = load(files[: a.train])
xv, yv = load(files[a.train : a.train + a.val])
model = getattr(torchvision.models, a.model)(num_classes=len(classes))
opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=1e-4)
for epoch in range(1, a.epochs + 1):
    model.train()
    perm, correct = torch.randperm(len(xt)), 0
    for i in range(0, len(xt), 64):
        idx = perm[i : i + 64]
        out = model(xt[idx])
        loss = torch.nn.functional.cross_entropy(out, yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct += (out.argmax(1) == yt[idx]).sum().item()
    with torch.no_grad():
        model.eval()
        out = model(xv)
        val_loss = torch.nn.functional.cross_entropy(out, yv).item()
        val_acc = (out.argmax(1) == yv).float().mean().item()
        model.train()  # batch statistics (updates the running ones too; the next epoch trains anyway)
        batch_acc = (model(xv[:512]).argmax(1) == yv[:512]).float().mean().item()
    print(f"epoch {epoch}  train acc {correct / len(xt):.2%}  val loss {val_loss:.4f}  val acc (eval mode) "
          f"{val_acc:.2%}  val acc with batch statistics {batch_acc:.2%}", flush=True)

#!/usr/bin/python3
"""PyTorch twin of `fewshot --method protonet` meta-training, for the episodes/s comparison.

Same work per iteration as examples/fewshot.cpp: Conv-4 (4 x [conv3x3 32, BN, ReLU, maxpool 2]) on
32x32 images, meta-batch 4 episodes of 5-way K-shot 15-query, support and query through the encoder
as one batch, prototypes = class means, logits = -squared Euclidean distance, cross-entropy,
gradients averaged over the meta-batch, one Adam step. Images: the first --per-class JPEGs of the
meta-train class folders, decoded once and normalised with their per-channel statistics (the C++
example decodes every image and normalises per batch; both keep images in memory, so the timed loop
is episode sampling + forward + backward + step in both). Every iteration is timed, as in the C++ run;
wall and process CPU seconds are both reported (on a busy machine, episodes per CPU second is the
comparable figure with one thread).

  /usr/bin/python3 benchmarks/fewshot_pytorch.py --data /tmp/cifar10/train --iterations 30 --threads 2
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def conv4(width=32):
    layers, c = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
        c = width
    return nn.Sequential(*layers, nn.Flatten())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/cifar10/train")
    ap.add_argument("--classes", default="airplane,automobile,bird,cat,deer")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--meta-batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rng = random.Random(1)
    images = []
    for name in args.classes.split(","):
        folder = os.path.join(args.data, name)
        files = sorted(os.listdir(folder))[: args.per_class]
        arr = np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files])
        images.append(torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255)
    allx = torch.cat(images)
    mean, std = allx.mean(dim=(0, 2, 3), keepdim=True), allx.std(dim=(0, 2, 3), keepdim=True)
    images = [((x - mean) / std).contiguous() for x in images]

    model = conv4()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    K, Q, N = args.shots, args.queries, args.ways

    def episode():
        classes = rng.sample(range(len(images)), N)
        sx, qx = [], []
        for c in classes:
            idx = rng.sample(range(images[c].shape[0]), K + Q)
            sx.append(images[c][idx[:K]])
            qx.append(images[c][idx[K:]])
        return torch.cat(sx + qx)

    qy = torch.arange(N).repeat_interleave(Q)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.iterations):
        opt.zero_grad()
        for _ in range(args.meta_batch):
            f = model(episode())
            protos = f[: N * K].view(N, K, -1).mean(1)
            logits = -((f[N * K:, None, :] - protos[None]) ** 2).sum(-1)
            (F.cross_entropy(logits, qy) / args.meta_batch).backward()
        opt.step()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    episodes = args.iterations * args.meta_batch
    print(json.dumps({"framework": "pytorch " + torch.__version__, "method": "protonet", "shots": K, "ways": N,
                      "threads": args.threads, "iterations": args.iterations, "seconds": seconds,
                      "cpu_seconds": cpu_seconds, "train_episodes_per_s": episodes / seconds,
                      "train_episodes_per_cpu_s": episodes / cpu_seconds}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Predicted data-parallel step time and efficiency from a ring-allreduce cost model (issue 15).

    python3 benchmarks/scaling_model.py --bench bench_dist.json --step-resnet18 S [--latency-us A]

Inputs: the per-node compute step time of resnet18 (measured, seconds), resnet50's estimated from
FLOPs (4.09 / 1.82 GFLOPs per 224x224 image, torchvision), the gradient sizes (fp32: resnet18
11,689,512 and resnet50 25,557,032 parameters with 1000 classes), the bucket size (4 MB) and the
per-message latency alpha. Ring allreduce of S bytes over N nodes on links of B bytes/s, in k
buckets: T_ar = 2 (N-1) k alpha + 2 (N-1)/N S / B. Backward is 2/3 of the compute step; buckets
overlap it except the last one (the first layers' gradients are ready only when backward ends):
  no overlap:  T = T_c + T_ar
  overlap:     T = max(T_c, T_c/3 + T_ar) + T_ar(last bucket)
efficiency = T_c / T.
"""
import argparse
import json
import math

p = argparse.ArgumentParser()
p.add_argument("--bench", help="bench_dist_allreduce --json output (for the measured local latency)")
p.add_argument("--step-resnet18", type=float, required=True, help="measured resnet18 compute step per node (s)")
p.add_argument("--latency-us", type=float, default=None, help="alpha per ring step in us (default: measured locally)")
p.add_argument("--bucket-mb", type=float, default=4.0)
a = p.parse_args()

alpha = a.latency_us * 1e-6 if a.latency_us is not None else None
if a.bench:
    j = json.loads(open(a.bench).read().strip().splitlines()[-1])
    small = min(j["allreduce"], key=lambda r: r["bytes"])
    if alpha is None:
        alpha = small["median_s"] / (2 * (j["world"] - 1))  # one ring step of a tiny message
assert alpha is not None, "give --latency-us or --bench"

models = {"resnet18": (11_689_512, 1.0), "resnet50": (25_557_032, 4.09 / 1.82)}
links = {"10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8, "100 Gbit/s": 100e9 / 8}
print(f"alpha = {alpha * 1e6:.1f} us per ring step, buckets of {a.bucket_mb:g} MB\n")
print("| model | step/node (s) | gradient MB | link | nodes | allreduce (ms) | step, no overlap (s) | eff. | step, overlap (s) | eff. |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, (params, flops_ratio) in models.items():
    tc = a.step_resnet18 * flops_ratio
    S = params * 4.0
    k = math.ceil(S / (a.bucket_mb * 1e6))
    last = S - (k - 1) * a.bucket_mb * 1e6
    for lname, B in links.items():
        for N in (2, 8, 32):
            tar = 2 * (N - 1) * k * alpha + 2 * (N - 1) / N * S / B
            tlast = 2 * (N - 1) * alpha + 2 * (N - 1) / N * last / B
            t0 = tc + tar
            t1 = max(tc, tc / 3 + tar) + tlast
            print(f"| {name} | {tc:.3f} | {S / 1e6:.1f} | {lname} | {N} | {tar * 1e3:.1f} | {t0:.3f} | {tc / t0:.0%} | {t1:.3f} | {tc / t1:.0%} |")

#!/usr/bin/python3
"""Side-by-side images/s of xfer's bench_models and PyTorch on the same workloads.

For every (model, mode) it runs the PyTorch side and bench_models alternately, each in a fresh
process, and prints one table with both medians and the ratio xfer / PyTorch; --json prints the rows
as JSON. The PyTorch side runs under --python (default: this interpreter): Debian's /usr/bin/python3
has torch 1.13; the peer users would pick is a current PyTorch in a venv
(python3 -m venv V && V/bin/pip install torch torchvision):

  python3 benchmarks/compare_pytorch.py --python V/bin/python --bench build/benchmarks/bench_models \
      --threads 2 --batch 64 --seconds 10 --rounds 3 [--precision bf16] [--image 224]

Both sides run with their default OpenMP settings; --wait-policy passive|active sets OMP_WAIT_POLICY
for both as an extra, labelled configuration. --precision bf16 runs the PyTorch side under
torch.autocast("cpu", dtype=torch.bfloat16) with channels_last model and input; xfer has no bf16
path yet, so its column stays fp32 and the table says so.
Memory, both sides alike: base = resident set once the model and batch exist; the kernel's
high-water mark is then reset (/proc/self/clear_refs) and step = high-water mark over the steps
minus base (what training or inference adds on top of the weights).

Workloads match bench_models: input 3x32x32, 10 classes, SGD(lr=0.01, momentum=0.9).
  resnet18        torchvision resnet18 (ImageNet stem: 7x7/2 conv + max-pool)
  resnet18-cifar  resnet18 with conv1 = 3x3/1 and no max-pool
  vgg11           torchvision vgg11_bn features + Flatten + Linear(512, 10)
  resnet50, mobilenet_v3_large, mobilenet_v3_small, efficientnet_b0
                  torchvision's models with 10 classes (infer and train only; use --image 224)
Modes: infer (eval, no_grad), train (fwd + bwd + SGD step, train mode), frozen (backbone frozen,
its BatchNorm in eval mode and run under no_grad; only the head trains).
With several rounds the reported value is the median of the per-round medians.
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time


ZOO_HEADS = {"resnet50": "fc", "mobilenet_v3_large": "classifier.3", "mobilenet_v3_small": "classifier.3",
             "efficientnet_b0": "classifier.1"}


def proc_status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return 0.0


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def torch_worker(args):
    import torch
    import torch.nn as nn
    import torchvision

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    if args.model == "resnet18":
        net = torchvision.models.resnet18(num_classes=10)
        head = "fc"
    elif args.model == "resnet18-cifar":
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        head = "fc"
    elif args.model == "vgg11":
        feats = torchvision.models.vgg11_bn().features
        net = nn.Sequential(feats, nn.Flatten(), nn.Linear(512, 10))
        head = "2"
    elif args.model in ZOO_HEADS:  # torchvision's own model, 10 classes (infer and train modes)
        net = getattr(torchvision.models, args.model)(num_classes=10)
        head = ZOO_HEADS[args.model]
        if args.mode == "frozen":
            raise SystemExit(f"frozen mode is not scripted for {args.model}")
    else:
        raise SystemExit(f"unknown model {args.model}")

    g = torch.Generator().manual_seed(42)
    x = torch.randn(args.batch, 3, args.image, args.image, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    bf16 = args.precision == "bf16"
    if bf16:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if args.mode == "infer":
        net.eval()

        def step():
            with torch.no_grad(), autocast():
                net(x)
    else:
        net.train()
        head_mod = dict(net.named_modules())[head]
        if args.mode == "frozen":
            for p in net.parameters():
                p.requires_grad_(False)
            for p in head_mod.parameters():
                p.requires_grad_(True)
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
            # The backbone is everything except the head; run it without autograd.
            if args.model == "vgg11":
                backbone = nn.Sequential(net[0], net[1])
            else:
                backbone = nn.Sequential(*[m for n, m in net.named_children() if n != "fc"], nn.Flatten())
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

        def step():
            with autocast():
                if args.mode == "frozen":
                    with torch.no_grad():
                        f = backbone(x)
                    out = head_mod(f)
                else:
                    out = net(x)
                loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

    rss_base = proc_status_mb("VmRSS:")
    reset_peak_rss()
    for _ in range(args.warmup):
        step()
    rates = []
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds or len(rates) < 3:
        t0 = time.perf_counter()
        step()
        rates.append(args.batch / (time.perf_counter() - t0))
    print(json.dumps({"model": args.model, "mode": args.mode, "batch": args.batch, "threads": args.threads,
                      "precision": args.precision, "img_per_s": statistics.median(rates),
                      "img_per_s_min": min(rates), "rss_base_mb": rss_base, "rss_peak_mb": proc_status_mb("VmHWM:"),
                      "steps": len(rates), "torch": torch.__version__}))


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["rss_step_mb"] = r["rss_peak_mb"] - r["rss_base_mb"]
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build/benchmarks/bench_models", help="path to bench_models")
    ap.add_argument("--models", default="resnet18,resnet18-cifar,vgg11")
    ap.add_argument("--modes", default="infer,train,frozen")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times")
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch + torchvision for the PyTorch side")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="PyTorch side: fp32, or bf16 autocast + channels_last (xfer stays fp32)")
    ap.add_argument("--wait-policy", choices=["inherit", "passive", "active"], default="inherit",
                    help="OMP_WAIT_POLICY for both sides; default: each library's own default (an extra, labelled row otherwise)")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        torch_worker(args)
        return

    if not os.access(args.bench, os.X_OK):
        raise SystemExit(f"compare_pytorch: bench_models not found at {args.bench} (build it, or pass --bench)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.wait_policy
    common = ["--batch", str(args.batch), "--threads", str(args.threads), "--seconds", str(args.seconds),
              "--warmup", str(args.warmup), "--image", str(args.image)]
    rows = []
    for model in args.models.split(","):
        for mode in args.modes.split(","):
            ours, theirs = [], []
            for _ in range(args.rounds):
                theirs.append(run_json([args.python, os.path.abspath(__file__), "--worker", "--model", model,
                                        "--mode", mode, "--precision", args.precision] + common, env))
                ours.append(run_json([args.bench, "--model", model, "--mode", mode, "--json"] + common, env))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            row = {"model": model, "mode": mode, "batch": args.batch, "threads": args.threads, "image": args.image,
                   "torch_precision": args.precision, "torch_version": theirs[0]["torch"],
                   "wait_policy": env.get("OMP_WAIT_POLICY", "default"), "isa": ours[0].get("isa"),
                   "xfer_img_per_s": med(ours, "img_per_s"), "xfer_img_per_s_min": min(r["img_per_s_min"] for r in ours),
                   "torch_img_per_s": med(theirs, "img_per_s"),
                   "torch_img_per_s_min": min(r["img_per_s_min"] for r in theirs),
                   "xfer_rss_base_mb": med(ours, "rss_base_mb"), "xfer_rss_step_mb": med(ours, "rss_step_mb"),
                   "torch_rss_base_mb": med(theirs, "rss_base_mb"), "torch_rss_step_mb": med(theirs, "rss_step_mb")}
            row["ratio"] = row["xfer_img_per_s"] / row["torch_img_per_s"]
            rows.append(row)
            if not args.json:
                print(f"  measured {model} {mode}: xfer {row['xfer_img_per_s']:.1f}, torch {row['torch_img_per_s']:.1f} img/s",
                      file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
        return
    theirs_label = f"PyTorch {rows[0]['torch_version']} " + ("bf16 autocast + channels_last" if args.precision == "bf16" else "fp32")
    print(f"batch {args.batch}, {args.threads} threads, 3x{args.image}x{args.image}, median img/s over "
          f"{args.seconds:g} s x {args.rounds} round(s), OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'default')}, "
          f"xfer fp32 (isa {rows[0]['isa']}) vs {theirs_label}\n")
    print("| model | mode | xfer img/s | PyTorch img/s | xfer / PyTorch | RSS MB xfer base + step | RSS MB PyTorch base + step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['xfer_img_per_s']:.0f} | {r['torch_img_per_s']:.0f} | "
              f"{r['ratio']:.2f}x | {r['xfer_rss_base_mb']:.0f} + {r['xfer_rss_step_mb']:.0f} | "
              f"{r['torch_rss_base_mb']:.0f} + {r['torch_rss_step_mb']:.0f} |")


if __name__ == "__main__":
    main()

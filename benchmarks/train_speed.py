"""Seconds per training iteration and peak memory for each method, with its paper architecture, on this machine.

    python benchmarks/train_speed.py [--methods cut cyclegan ...] [--sizes 128 256] [--iters 10] [--warmup 2]

Each (method, size) runs in its own subprocess so peak RSS is that configuration's alone. The batch is
synthetic (random images), so only the training step is timed: no data loading, no logging, no evaluation.
Reports the median of `--iters` iterations after `--warmup` iterations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def measure(method: str, size: int, iters: int, warmup: int, threads: int, preset: str = "paper") -> dict:
    import resource

    import torch

    import methods

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = methods.get(method)
    overrides = {"crop_size": size, "load_size": size} if size else {}
    fields = {f.name for f in __import__("dataclasses").fields(cls.Config)}
    if "allow_random_vgg" in fields:
        overrides["allow_random_vgg"] = True  # offline: VGG16 ImageNet weights are absent; speed is the same
    if "num_downs" in fields and size and size < 256:
        overrides["num_downs"] = 7  # unet_128
    m = methods.build(method, preset=preset, device="cpu", **overrides)
    bs, size = m.cfg.batch_size, m.cfg.crop_size
    batch = {"A": torch.rand(bs, 3, size, size) * 2 - 1, "B": torch.rand(bs, 3, size, size) * 2 - 1}
    m.setup(batch)
    m.train()
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        m.train_step(batch)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "size": size, "sec_per_iter": statistics.median(times), "min": min(times),
            "peak_rss_mb": round(peak_mb), "params": m.parameter_count(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--preset", default="paper", help="paper (default) or smoke (width-8 nets)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.iters, args.warmup, args.threads, args.preset)))
        return
    import methods

    names = args.methods or methods.names()
    rows = []
    print(f"{'method':22s} {'size':>5s} {'s/iter':>8s} {'min':>8s} {'peak MB':>8s} {'params':>12s}")
    for name in names:
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--one", name, str(size), "--iters", str(args.iters),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{name:22s} {size:5d} failed: {err[:90]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{name:22s} {size:5d} {r['sec_per_iter']:8.3f} {r['min']:8.3f} {r['peak_rss_mb']:8d} {r['params']:12,d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

"""CPU thread sweep: how the intra-op thread count changes speed at smoke size and at 256 px (CUT).

    python benchmarks/thread_sweep.py [--threads 1 2 0] [--methods cut cyclegan] [--iters 20] [--big-iters 2]
                                      [--sizes 32 64 128 256] [--runs cut] [--json FILE]

Three measurements, each configuration in its own subprocess (`OMP_NUM_THREADS` and `train.threads` set to
the count, 0 = all cores of this process):
- `step`: median seconds per training iteration of the smoke-preset nets (width 8) at each `--sizes` size
  (synthetic batch, no data loading or evaluation; `benchmarks/train_speed.py --one`);
- `256px CUT`: the paper CUT at 256 px, `--big-iters` iterations after one warm-up (slow on CPU);
- `run`: wall time of a whole `bench run --dataset toy --preset smoke` (training, evaluation, tracking) of
  each `--runs` method.
The load average is printed with every row: other processes on the machine change these numbers.
This is what chose bench's automatic thread rule (bench/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _env(threads: int) -> dict[str, str]:
    n = str(threads or cores())
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def step(method: str, preset: str, size: int, threads: int, iters: int, warmup: int) -> dict:
    cmd = [sys.executable, str(HERE / "train_speed.py"), "--one", method, str(size), "--preset", preset,
           "--iters", str(iters), "--warmup", str(warmup), "--threads", str(threads or cores())]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads))
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def whole_run(method: str, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", method, "--dataset", "toy", "--preset", "smoke",
               "--out", f"{tmp}/runs", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--no-progress",
               "--set", f"train.threads={threads or cores()}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["?"])[-1])
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2, 0], help="counts to try (0 = all cores)")
    ap.add_argument("--methods", nargs="+", default=["cut", "cyclegan"], help="methods of the step sweep")
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128], help="image sizes of the step sweep")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--big-iters", type=int, default=2, help="iterations of the 256 px paper CUT (0: skip)")
    ap.add_argument("--runs", nargs="*", default=["cut"], help="methods timed as whole smoke runs")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args()
    counts = list(dict.fromkeys(t if t else cores() for t in args.threads))
    rows = []

    def show(kind: str, what: str, threads: int, value: float, unit: str) -> None:
        load = os.getloadavg()[0]
        rows.append({"kind": kind, "what": what, "threads": threads, "value": value, "unit": unit, "load1": load})
        print(f"{kind:10s} {what:28s} {threads:>7d} {value:10.4f} {unit:8s} {load:6.2f}", flush=True)

    print(f"{'kind':10s} {'what':28s} {'threads':>7s} {'value':>10s} {'unit':8s} {'load1':>6s}  ({cores()} cores)")
    for method in args.methods:
        for size in args.sizes:
            for t in counts:
                r = step(method, "smoke", size, t, args.iters, 3)
                show("step", f"{method} smoke nets {size}px", t, r["sec_per_iter"], "s/iter")
    if args.big_iters:
        for t in counts:
            r = step("cut", "paper", 256, t, args.big_iters, 1)
            show("step", "cut paper 256px", t, r["sec_per_iter"], "s/iter")
    for method in args.runs:
        for t in counts:
            show("run", f"{method} toy smoke (whole run)", t, whole_run(method, t), "s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

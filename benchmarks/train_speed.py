"""Seconds per training iteration, images/s and peak memory per method, precision mode and device.

    python benchmarks/train_speed.py [--methods cut cyclegan ...] [--sizes 256] [--device cpu|cuda]
                                     [--modes fp32 bf16 bf16+compile] [--pool 1 2 4] [--iters 10] [--warmup 2]
                                     [--threads N] [--preset paper|smoke] [--json FILE] [--markdown FILE]

Each (method, size, mode) runs in its own subprocess, so peak memory is that configuration's alone: peak GPU
memory (torch.cuda.max_memory_allocated) on CUDA, peak RSS on CPU. The batch is synthetic (random images, the
paper batch size), so only the training step is timed: no data loading, no logging, no evaluation. The step
is set up exactly as a run sets it up (bench.precision: autocast, GradScaler, channels_last, torch.compile,
TF32; determinism switches as `train.deterministic`). Reports the median of `--iters` iterations after
`--warmup` iterations (give compile modes enough warm-up to compile every graph).

A mode is `+`-joined switches: a precision (fp32 | bf16 | fp16) and any of compile, channels_last, tf32,
nondeterministic; e.g. `bf16+compile+channels_last`.

`--pool 1 2 4`: the local pool's aggregate throughput with K runs of the first method/size/mode on one device
at once (K processes started together, timed from a common start after their warm-up): images/s of all K
together, and per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWITCHES = ("compile", "channels_last", "tf32", "nondeterministic")


def parse_mode(mode: str) -> dict:
    """'bf16+compile' -> {"precision": "bf16", "compile": True, ...} (train.* settings of a run)."""
    from bench.precision import PRECISIONS

    parts = [p for p in mode.split("+") if p]
    precision = [p for p in parts if p in PRECISIONS]
    unknown = [p for p in parts if p not in PRECISIONS and p not in SWITCHES]
    if unknown or len(precision) > 1:
        raise SystemExit(f"mode {mode!r}: use one of {', '.join(PRECISIONS)} plus any of {', '.join(SWITCHES)}")
    return {"precision": precision[0] if precision else "fp32", "compile": "compile" in parts,
            "channels_last": "channels_last" in parts, "tf32": "tf32" in parts,
            "deterministic": "nondeterministic" not in parts}


def measure(method: str, size: int, iters: int, warmup: int, threads: int, preset: str = "paper",
            device: str = "cpu", mode: str = "fp32", barrier: str | None = None, runners: int = 1) -> dict:
    import resource

    import torch

    import methods
    from bench import seeding
    from bench.config import TrainConfig
    from bench.precision import Amp, configure_tf32, prepare_nets, to_memory_format

    if threads:
        torch.set_num_threads(threads)
    train = TrainConfig(**parse_mode(mode))
    seeding.configure_determinism(train.deterministic)
    configure_tf32(train.tf32)
    torch.manual_seed(0)
    cls = methods.get(method)
    overrides = {"crop_size": size, "load_size": size} if size else {}
    fields = {f.name for f in __import__("dataclasses").fields(cls.Config)}
    if "allow_random_vgg" in fields:
        overrides["allow_random_vgg"] = True  # offline: VGG16 ImageNet weights are absent; speed is the same
    if "num_downs" in fields and size and size < 256:
        overrides["num_downs"] = 7  # unet_128
    m = methods.build(method, preset=preset, device=device, **overrides)
    bs, size = m.cfg.batch_size, m.cfg.crop_size
    gen = torch.Generator().manual_seed(0)
    batch = {"A": torch.rand(bs, 3, size, size, generator=gen) * 2 - 1,
             "B": torch.rand(bs, 3, size, size, generator=gen) * 2 - 1,
             "A_path": [f"a{i}" for i in range(bs)], "B_path": [f"b{i}" for i in range(bs)]}
    m.setup(batch)
    prepare_nets(m, train)
    amp = Amp(train.precision, m.device)
    amp.guard(m.optimizers.values())
    m.train()
    batch = to_memory_format({k: v.to(m.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                             train)
    cuda = m.device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def one():
        with amp.train_step():
            m.train_step(batch)

    for _ in range(warmup):
        one()
    sync()
    if barrier:  # the pool benchmark: every runner starts timing together
        Path(barrier, f"ready.{os.getpid()}").touch()
        while len(list(Path(barrier).glob("ready.*"))) < runners:
            time.sleep(0.01)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    start = time.time()
    for _ in range(iters):
        t0 = time.perf_counter()
        one()
        sync()
        times.append(time.perf_counter() - t0)
    end = time.time()
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if cuda
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    sec = statistics.median(times)
    return {"method": method, "size": size, "mode": mode, "device": str(m.device), "batch": bs,
            "sec_per_iter": sec, "min": min(times), "images_per_s": bs / sec, "peak_mb": round(peak_mb),
            "params": m.parameter_count(), "threads": torch.get_num_threads(), "start": start, "end": end,
            "iters": iters}


def _one_cmd(args, method: str, size: int, mode: str, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, __file__, "--one", method, str(size), "--mode", mode, "--device", args.device,
            "--preset", args.preset, "--iters", str(args.iters), "--warmup", str(args.warmup),
            "--threads", str(args.threads), *(extra or [])]


def _result(proc) -> dict:
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["?"])[-1][:200])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pool_throughput(args, method: str, size: int, mode: str, k: int) -> dict:
    """K concurrent runs of one configuration on one device: aggregate and per-run images/s."""
    from bench.launch.procs import cpu_share, worker_env

    with tempfile.TemporaryDirectory() as barrier:
        env = worker_env(cpu_share(k))
        threads = ["--threads", str(cpu_share(k))] if args.device == "cpu" else []
        cmd = _one_cmd(args, method, size, mode, ["--barrier", barrier, "--runners", str(k)]) + threads
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(k)]
        rows = []
        for p in procs:
            out, err = p.communicate()
            rows.append(_result(subprocess.CompletedProcess(cmd, p.returncode, out, err)))
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    images = sum(r["iters"] * r["batch"] for r in rows)
    return {"k": k, "aggregate_images_per_s": images / wall, "per_run_images_per_s": [r["images_per_s"] for r in rows],
            "peak_mb": [r["peak_mb"] for r in rows]}


def device_line(device: str) -> str:
    """What the numbers were measured on: GPU model (or CPU cores), torch, CUDA."""
    import platform

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def markdown(doc: dict) -> str:
    """The README table of a measurement: per method and mode s/iter, images/s, peak memory, speed-up vs fp32
    of the same method; then the pool's aggregate throughput per K."""
    rows, pools = doc["steps"], doc["pool"]
    unit = "peak GPU MB" if doc["device"].startswith("cuda") else "peak RSS MB"
    fp32 = {(r["method"], r["size"]): r["sec_per_iter"] for r in rows if r["mode"] == "fp32"}
    out = [f"Measured on {doc['machine']} with `{doc['command']}` (batch 1, median of {doc['iters']} iterations "
           f"after {doc['warmup']} warm-up).", "",
           f"| method | px | mode | s/iter | images/s | {unit} | vs fp32 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = fp32.get((r["method"], r["size"]))
        speedup = f"{base / r['sec_per_iter']:.2f}x" if base else ""
        out.append(f"| {r['method']} | {r['size']} | {r['mode']} | {r['sec_per_iter']:.4f} | {r['images_per_s']:.1f} "
                   f"| {r['peak_mb']} | {speedup} |")
    if pools:
        p0 = pools[0]
        base = p0["aggregate_images_per_s"] / p0["k"]
        out += ["", f"Pool on one device ({doc['pool_what']}): K runs at once, each its own process.", "",
                "| K | aggregate images/s | vs K=1 | target 0.8·K | per run images/s |", "|---|---|---|---|---|"]
        for p in pools:
            ratio = p["aggregate_images_per_s"] / base
            out.append(f"| {p['k']} | {p['aggregate_images_per_s']:.1f} | {ratio:.2f}x | {0.8 * p['k']:.1f}x | "
                       f"{' '.join(f'{v:.1f}' for v in p['per_run_images_per_s'])} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--modes", nargs="+", default=["fp32"], help="e.g. fp32 bf16 bf16+compile")
    parser.add_argument("--pool", nargs="*", type=int, default=[], metavar="K",
                        help="also measure K runs at once on the device (first method, size and mode)")
    parser.add_argument("--pool-mode", default=None, help="mode of the pool measurement (default: the first)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--preset", default="paper", help="paper (default) or smoke (width-8 nets)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--runners", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results as JSON (after every row)")
    parser.add_argument("--markdown", help="also write the README table (Markdown, after every row)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.iters, args.warmup, args.threads, args.preset,
                                 args.device, args.mode, args.barrier, args.runners)))
        return
    import methods

    for mode in args.modes:
        parse_mode(mode)
    names = args.methods or methods.names()
    doc = {"device": args.device, "machine": device_line(args.device), "iters": args.iters, "warmup": args.warmup,
           "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:]), "steps": [], "pool": [],
           "pool_what": ""}

    def save() -> None:  # after every row: a time limit that stops the script keeps what was measured
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2))
        if args.markdown:
            Path(args.markdown).write_text(markdown(doc))

    print(doc["machine"])
    print(f"{'method':22s} {'size':>5s} {'mode':>22s} {'s/iter':>8s} {'img/s':>8s} {'peak MB':>8s} {'params':>12s}")
    # Modes outermost, the pool right after the first mode: the slow compile modes come last.
    for index, mode in enumerate(args.modes):
        for name in names:
            for size in args.sizes:
                proc = subprocess.run(_one_cmd(args, name, size, mode), capture_output=True, text=True)
                try:
                    r = _result(proc)
                except RuntimeError as exc:
                    print(f"{name:22s} {size:5d} {mode:>22s} failed: {exc}", flush=True)
                    continue
                doc["steps"].append(r)
                save()
                print(f"{name:22s} {size:5d} {mode:>22s} {r['sec_per_iter']:8.3f} {r['images_per_s']:8.2f} "
                      f"{r['peak_mb']:8d} {r['params']:12,d}", flush=True)
        if index == 0 and args.pool:
            pool_section(args, names, doc, save)


def pool_section(args, names: list[str], doc: dict, save) -> None:
    method, size, mode = names[0], args.sizes[0], args.pool_mode or args.modes[0]
    doc["pool_what"] = f"{method} {size} px {mode}"
    print(f"\npool on one {args.device}: {method} {size} px {mode}, K runs at once")
    print(f"{'K':>3s} {'aggregate img/s':>16s} {'vs K=1':>8s} {'per run img/s':>24s} {'peak MB':>16s}")
    base = None
    for k in args.pool:
        try:
            p = pool_throughput(args, method, size, mode, k)
        except RuntimeError as exc:
            print(f"{k:3d} failed: {exc}", flush=True)
            continue
        doc["pool"].append(p)
        save()
        base = base or p["aggregate_images_per_s"] / p["k"]
        per = " ".join(f"{v:.2f}" for v in p["per_run_images_per_s"])
        print(f"{k:3d} {p['aggregate_images_per_s']:16.2f} {p['aggregate_images_per_s'] / base:7.2f}x {per:>24s} "
              f"{max(p['peak_mb']):16d}", flush=True)
    print()


if __name__ == "__main__":
    main()

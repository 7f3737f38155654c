"""Wall time of `python -m pytorch_fid A B` vs `bench eval` (cold feature cache, then warm) on the same folders.

    BENCH_FIXTURES=../shared python benchmarks/eval_speed.py [--pairs afhq maps] [--metrics fid] [--threads 2]
    python benchmarks/eval_speed.py --real DIR --fake DIR --inception-weights FILE

Every tool runs as a fresh subprocess (interpreter start, imports, weight loading included), one after the
other, so the ratios compare like with like. pytorch-fid gets the same Inception tensors: a temporary
TORCH_HOME holds them as its `pt_inception-2015-12-05-6726825d.pth` (a zero fc layer is added when the
file is the pool3-only trunk: its strict loader wants one, FID never uses it). Also printed: both FIDs
(they must agree to 1e-3). Targets from the issue: >= 2x faster cold, >= 20x with the cache warm.
Fixture pairs: `afhq` = afhq_mini cat (15) vs dog (11), 512 px JPEG; `maps` = the 64 maps_mini val images
cut into their photo (A) and map (B) halves, 600 px PNG, written to a temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _fixtures() -> Path:
    root = os.environ.get("BENCH_FIXTURES")
    if not root:
        sys.exit("set BENCH_FIXTURES (the shared test assets) or pass --real/--fake/--inception-weights")
    return Path(root)


def _maps_halves(tmp: Path) -> tuple[Path, Path]:
    from PIL import Image

    a, b = tmp / "maps_A", tmp / "maps_B"
    a.mkdir()
    b.mkdir()
    for f in sorted((_fixtures() / "data" / "maps_mini" / "val").glob("*.jpg")):
        with Image.open(f) as im:
            w, h = im.size
            im.crop((0, 0, w // 2, h)).save(a / f"{f.stem}.png")
            im.crop((w // 2, 0, w, h)).save(b / f"{f.stem}.png")
    return a, b


def _pytorch_fid_home(weights: Path, tmp: Path) -> Path:
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    state.setdefault("fc.weight", torch.zeros(1008, 2048))
    state.setdefault("fc.bias", torch.zeros(1008))
    home = tmp / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    return home


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return elapsed, out.stdout


def bench_pair(name: str, real: Path, fake: Path, weights: Path, metrics: str, threads: int, tmp: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else dict(os.environ)
    env.pop("BENCH_INCEPTION_WEIGHTS", None)
    home = _pytorch_fid_home(weights, tmp / name)
    t_ref, out = _timed([sys.executable, "-m", "pytorch_fid", str(real), str(fake), "--device", "cpu"],
                        {**env, "TORCH_HOME": str(home)})
    fid_ref = float(re.search(r"FID:\s+([-0-9.e]+)", out).group(1))
    cache = tmp / name / "bench_cache"
    ours = [sys.executable, "-m", "bench.cli", "eval", "--real", str(real), "--fake", str(fake), "--metrics", metrics,
            "--inception-weights", str(weights), "--cache-dir", str(cache), "--json", str(tmp / name / "ours.json")]
    t_cold, _ = _timed(ours, env)
    t_warm, _ = _timed(ours, env)
    doc = json.loads((tmp / name / "ours.json").read_text())["metrics"]
    n_real, n_fake = doc["fid"]["fingerprint"]["n_real"], doc["fid"]["fingerprint"]["n_fake"]
    return {"pair": name, "n": f"{n_real}+{n_fake}", "pytorch_fid_s": t_ref, "bench_cold_s": t_cold,
            "bench_warm_s": t_warm, "cold_speedup": t_ref / t_cold, "warm_speedup": t_ref / t_warm,
            "fid_pytorch_fid": fid_ref, "fid_bench": doc["fid"]["value"], "metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", nargs="+", default=["afhq", "maps"], choices=["afhq", "maps"])
    ap.add_argument("--real", type=Path)
    ap.add_argument("--fake", type=Path)
    ap.add_argument("--inception-weights", type=Path, default=None)
    ap.add_argument("--metrics", default="fid", help="what bench computes (pytorch-fid always computes FID only)")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for both tools (0: their default)")
    args = ap.parse_args()
    weights = args.inception_weights or Path(os.environ.get("BENCH_INCEPTION_WEIGHTS") or
                                             _fixtures() / "weights" / "pt_inception-2015-12-05-nofc.pth")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_speed_") as tmpdir:
        tmp = Path(tmpdir)
        if args.real and args.fake:
            pairs = {"custom": (args.real, args.fake)}
        else:
            pairs = {}
            if "afhq" in args.pairs:
                afhq = _fixtures() / "data" / "afhq_mini"
                pairs["afhq cat/dog"] = (afhq / "cat", afhq / "dog")
            if "maps" in args.pairs:
                pairs["maps val A/B"] = _maps_halves(tmp)
        for i, (name, (real, fake)) in enumerate(pairs.items()):
            rows.append(bench_pair(f"p{i}", real, fake, weights, args.metrics, args.threads, tmp) | {"pair": name})
            r = rows[-1]
            print(f"{name}: N {r['n']}  pytorch-fid {r['pytorch_fid_s']:.1f}s  bench cold {r['bench_cold_s']:.1f}s "
                  f"({r['cold_speedup']:.1f}x)  warm {r['bench_warm_s']:.1f}s ({r['warm_speedup']:.1f}x)  "
                  f"FID {r['fid_pytorch_fid']:.4f} vs {r['fid_bench']:.4f} (|d| {abs(r['fid_pytorch_fid'] - r['fid_bench']):.1e})",
                  flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

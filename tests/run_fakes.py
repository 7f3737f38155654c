"""What `bench run` leaves in a run folder (config.json, metrics.json, history.json, the scored PNGs), written
without training, for fast tests of the code that reads run folders (bench reproduce, bench report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _png(path: Path, base: int, rng: np.random.Generator, size: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.clip(base + rng.integers(-40, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def fake_finished_run(cfg, n_a: int = 4, n_b: int = 6, best_differs: bool = True) -> Path:
    """A finished run of `cfg` (a RunConfig): n_a test inputs, n_b targets (so the official loop wraps around),
    best-epoch fakes brighter than the last ones, SWD scored for real; returns the run folder."""
    from bench.metrics import evaluate

    run_dir = Path(cfg.run_dir)
    seed = int(cfg.seed)
    rng = np.random.default_rng(seed)
    for i in range(n_b):
        _png(run_dir / "eval" / "reference" / f"b{i}.png", 150, rng)
    for i in range(n_a):
        _png(run_dir / "eval" / "last" / "fake" / f"a{i}.png", 120 + 10 * seed, rng)
        if best_differs:
            _png(run_dir / "eval" / "best" / "fake" / f"a{i}.png", 140, rng)
    test = run_dir / "eval" / "last" / "test"
    for i in range(min(n_a, 3)):
        _png(test / "inputs" / f"a{i}.png", 60 + 40 * i, rng)
        (test / "outputs").mkdir(parents=True, exist_ok=True)
        (test / "outputs" / f"a{i}.png").write_bytes((run_dir / "eval" / "last" / "fake" / f"a{i}.png").read_bytes())
    wrap = [f"a{i}__loop{n_a + i}.png" for i in range(n_b - n_a)]
    for name in wrap:
        _png(run_dir / "eval" / "last" / "fake_wrap" / name, 120, rng)
    value = evaluate(run_dir / "eval" / "reference", run_dir / "eval" / "last" / "fake", metrics=("swd",),
                     seed=seed)["swd"]
    test_set = {"rule": "per_input", "n_inputs": n_a, "n_targets": n_b, "n_loop": n_b,
                "wrap_dir": str(run_dir / "eval" / "last" / "fake_wrap"), "wrap_files": wrap}
    doc = {"last": {"epoch": 4, "metrics": {"swd": value.to_dict()}, "test_set": test_set},
           "best": {"epoch": 3 if best_differs else 4, "metrics": {"swd": value.to_dict()}, "test_set": test_set}}
    (run_dir / "metrics.json").write_text(json.dumps(doc))
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), default=str))
    history = [{"epoch": e, "iteration": 10 * e, "swd": float(60 - 5 * e + seed)} for e in range(1, 5)]
    (run_dir / "history.json").write_text(json.dumps(history))
    return run_dir

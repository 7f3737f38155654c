"""The study tests' objective: `_quadratic`, a smooth function of the trial's parameters that trains nothing.

Registered through the study runner's plugin hook (bench.studies.objectives, $BENCH_STUDY_PLUGINS); conftest
points the variable at this file, so in-process studies and worker subprocesses both see it.

Options (spec overrides): `epochs` (evaluation reports), `sleep` (seconds per epoch), `fail` (raise),
`marker_dir` (one file per execution, so tests can count how often each point ran), `wait_for_workers` (block
until that many processes have written markers: proves the workers really ran concurrently).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.studies.objectives import register_objective

OPTIONS = {"epochs", "sleep", "fail", "marker_dir", "wait_for_workers", "train.select_metric"}


def quadratic(seed: int, overrides: Mapping[str, Any], number: int,
              on_eval: Callable[[int, Mapping[str, float]], None]) -> dict[str, Any]:
    """Sum of (x - 1)^2 over numeric parameters (len/10 for text ones) + 0.01 * seed."""
    value = 0.0
    for key, v in sorted(overrides.items()):
        if key in OPTIONS or "." in key:
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            value += (float(v) - 1.0) ** 2
        else:
            value += len(str(v)) / 10.0
    value += 0.01 * seed
    if overrides.get("marker_dir"):
        marker = Path(str(overrides["marker_dir"])) / f"{os.getpid()}-{number}-{seed}-{time.time_ns()}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"trial": number, "seed": seed, "pid": os.getpid(),
                                      "params": {k: v for k, v in overrides.items() if k not in OPTIONS}},
                                     default=str))
        need, deadline = int(overrides.get("wait_for_workers", 0)), time.monotonic() + 120
        while len({p.name.split("-")[0] for p in marker.parent.glob("*.json")}) < need:
            if time.monotonic() > deadline:
                raise RuntimeError(f"_quadratic: fewer than {need} workers showed up within 120 s")
            time.sleep(0.2)
    epochs = steps(overrides)
    for epoch in range(1, epochs + 1):
        time.sleep(float(overrides.get("sleep", 0.0)))
        on_eval(epoch, {"fid": value * (1.0 + 1.0 / epoch)})
    if str(overrides.get("fail", "")).lower() in ("1", "true", "yes"):
        raise RuntimeError("_quadratic asked to fail")
    scores = {"fid": value, "kid": value / 10.0}
    return {"last": {**scores, "epoch": epochs}, "best": {**scores, "epoch": epochs}}


def steps(overrides: Mapping[str, Any]) -> int:
    return int(overrides.get("epochs", 3))


register_objective("_quadratic", quadratic, steps=steps)

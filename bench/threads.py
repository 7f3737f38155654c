"""CPU threads of a run: resolved before training, recorded with the run, and kept on resume.

The intra-op thread count changes a run's numbers: torch splits reductions (convolution backward, sums) into
per-thread chunks, so 1 and 2 threads add in different orders and training drifts apart. The guarantee is
therefore "same seed, same machine, same thread count", and the count is part of the run's protocol:
`config.json`, the MLflow params (`train.threads`), the config hash and every metric fingerprint hold the
number that was used, never "torch's default".

`train.threads = 0` asks for the automatic rule (measured with benchmarks/thread_sweep.py, README "Speed"):
one thread for small images (per-op overhead dominates and a second thread only adds synchronisation, and
spinning threads get many times slower when the machine is shared), the cores this run may use for larger
ones. "The cores this run may use" is this process's CPU affinity, capped by OMP_NUM_THREADS, or the share a
launcher gave it (`BENCH_CPU_SHARE`, set by the local pool, which splits the machine's cores between its
workers). A resumed run keeps the count it was started with; an explicit different count is refused unless
the resume is allowed to change it, which marks the run as no longer bitwise-continuous.

Inter-op threads (torch's pool for independent ops run concurrently, unused by bench's eager training) are
set alongside when the process still allows it and recorded; they do not change any number.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.checkpoint import atomic_write_json
from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.config import RunConfig

log = logging.getLogger(__name__)

#: Cores of this machine a launcher assigned to one run (the local pool sets it in each worker).
ENV_SHARE = "BENCH_CPU_SHARE"

#: Largest training crop (px) that gets one thread under the automatic rule (benchmarks/thread_sweep.py).
ONE_THREAD_MAX_CROP = 32


@dataclass(frozen=True)
class ThreadPlan:
    """The thread counts a run uses and why."""

    intra_op: int
    #: How the count was chosen: "explicit", "auto: ..." or "resumed: ...".
    rule: str


def available_cores() -> int:
    """Cores this run may use: the launcher's share, else the CPU affinity capped by OMP_NUM_THREADS."""
    share = os.environ.get(ENV_SHARE, "").strip()
    if share:
        if not share.isdigit() or int(share) < 1:
            raise ConfigError(f"{ENV_SHARE}={share!r}: expected a positive number of cores")
        return int(share)
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def auto_threads(crop_size: int) -> ThreadPlan:
    """The automatic rule: 1 thread for crops up to ONE_THREAD_MAX_CROP px, else every available core."""
    if crop_size <= ONE_THREAD_MAX_CROP:
        return ThreadPlan(1, f"auto: 1 thread for {crop_size} px images (<= {ONE_THREAD_MAX_CROP} px)")
    cores = available_cores()
    return ThreadPlan(cores, f"auto: the {cores} core(s) available to this run for {crop_size} px images")


def resolve(requested: int, crop_size: int, saved: int | None = None, *, allow_change: bool = False,
            where: str = "the run") -> ThreadPlan:
    """The intra-op thread count of a run.

    Args:
        requested: `train.threads` (0 = automatic rule).
        saved: the count a resumed run recorded (None for a new run; 0 for a run recorded before bench kept
            the count, which then resumes under the current rule).
        allow_change: on resume, accept an explicit count different from the saved one (the caller marks the
            run as no longer bitwise-continuous).
    """
    if saved:
        if not requested or requested == saved:
            return ThreadPlan(saved, f"resumed: the {saved} thread(s) {where} started with")
        if not allow_change:
            raise ConfigError(f"--resume: {where} trained with {saved} intra-op thread(s), --set train.threads="
                              f"{requested} would continue on another trajectory; resume with train.threads={saved} "
                              "(or without train.threads), or pass --allow-thread-change to continue anyway "
                              "(recorded: the run is then no longer bitwise-continuous)")
        return ThreadPlan(requested, f"explicit: changed from {saved} on resume (not bitwise-continuous)")
    if requested:
        return ThreadPlan(requested, "explicit")
    return auto_threads(crop_size)


def apply(plan: ThreadPlan) -> dict[str, int]:
    """Set torch's thread counts for this process; returns the effective {intra_op, inter_op} counts."""
    torch.set_num_threads(plan.intra_op)
    if torch.get_num_interop_threads() != plan.intra_op:
        try:
            torch.set_num_interop_threads(plan.intra_op)
        except RuntimeError:  # only settable once per process, before any inter-op work; harmless to keep
            log.debug("inter-op threads stay %d (already fixed in this process)", torch.get_num_interop_threads())
    effective = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    if effective["intra_op"] != plan.intra_op:  # pragma: no cover - torch builds without OpenMP
        raise ConfigError(f"train.threads={plan.intra_op}: torch runs {effective['intra_op']} intra-op threads "
                          "in this build; set train.threads to that number")
    return effective


# ------------------------------------------------------------------------------------------ one run's folder
#: Per run folder: the thread count a run is training with now, and whether it stayed bitwise-continuous.
CONTINUITY_FILE = "continuity.json"


def read_continuity(run_dir: Path) -> dict[str, Any]:
    """The continuity record of a run folder ({} when the run never changed its thread count)."""
    path = Path(run_dir) / CONTINUITY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it, or delete it if the run never changed "
                          "its thread count") from None


def _trained_threads(run_dir: Path) -> tuple[int | None, int | None, dict[str, Any]]:
    """(count in config.json, count the run trains with now, continuity record) of a folder that holds
    trained weights or scores; (None, None, {}) when nothing was trained there yet (a new run, or one that
    starts again)."""
    run_dir = Path(run_dir)
    if not ((run_dir / "checkpoints" / "last.pt").is_file() or (run_dir / "metrics.json").is_file()):
        return None, None, {}
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None, None, {}  # bench.run_folder reports the unreadable folder with its fix
    recorded = int((saved.get("train") or {}).get("threads") or 0)
    continuity = read_continuity(run_dir)
    return recorded, int(continuity.get("threads") or recorded), continuity


def settle(cfg: RunConfig, *, resume: bool = False, restart: bool = False, allow_change: bool = False
           ) -> tuple[RunConfig, ThreadPlan, dict[str, Any]]:
    """`cfg` with `train.threads` set to the count the run records, the plan it trains with, its continuity.

    Called before bench.run_folder compares the folder's settings with `cfg`. A new run (or `restart`)
    records the count it resolves. A run that already trained keeps the count it has been training with
    (`train.threads=0` then means "as before"), so a kept or resumed run compares equal; an explicit other
    count with `resume` is refused unless `allow_change`: then the config keeps the recorded count (MLflow
    params are immutable, and check_origin compares the config hash) and the continuity record notes the
    change. Without `resume` an explicit other count is a settings difference the run folder refuses.
    """
    recorded, current, continuity = (None, None, {}) if restart else _trained_threads(cfg.run_dir)
    requested, crop = cfg.train.threads, cfg.method_cfg.crop_size
    if recorded is None or (requested and requested != current and not resume):
        plan = resolve(requested, crop)
        return _with_threads(cfg, plan.intra_op), plan, {}
    if recorded == 0:  # recorded before bench kept the count (torch's default then): the rule decides now
        return cfg if requested == 0 else _with_threads(cfg, 0), resolve(requested, crop), {}
    plan = resolve(requested, crop, current, allow_change=allow_change, where=str(cfg.run_dir))
    if plan.intra_op != current:
        continuity = {"threads": plan.intra_op, "bitwise_continuous": False,
                      "thread_changes": [*continuity.get("thread_changes", []),
                                         {"from": current, "to": plan.intra_op}]}
    return _with_threads(cfg, recorded), plan, continuity


def note_change(run_dir: Path, continuity: dict[str, Any], iteration: int) -> None:
    """Write a new thread change (from `settle`) with the iteration it takes effect at, and warn."""
    changes = continuity.get("thread_changes") or []
    if not changes or "at_iteration" in changes[-1]:
        return
    changes[-1]["at_iteration"] = iteration
    atomic_write_json(Path(run_dir) / CONTINUITY_FILE, continuity)
    log.warning("%s continues with %d thread(s) from iteration %d: no longer bitwise-continuous", run_dir,
                continuity["threads"], iteration)


def _with_threads(cfg: RunConfig, n: int) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=n))

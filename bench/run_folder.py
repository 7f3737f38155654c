"""What an existing run folder holds, and what a new `bench run` may do with it.

A run folder `<out>/<dataset>/<method>/seed<N>/` is in one of four states:

- `absent`: no config.json (nothing was started here);
- `unstarted`: config.json but neither checkpoints/last.pt nor metrics.json (the run failed or was killed
  before its first checkpoint: nothing there is worth keeping, so the same command simply starts it again);
- `started`: checkpoints/last.pt but no metrics.json (`--resume` continues it);
- `finished`: metrics.json (a plain rerun with the same settings keeps it as it is).

A folder whose saved settings differ from the command's is never overwritten: the refusal names the command
that starts over (`--restart`, which moves the old folder aside to `seed<N>.replaced-<time>`; nothing is
deleted), or `--out` for another root.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import RESUMABLE_TRAIN_FIELDS, RunConfig
from bench.errors import BenchError, ConfigError

log = logging.getLogger(__name__)

ABSENT, UNSTARTED, STARTED, FINISHED = "absent", "unstarted", "started", "finished"
#: Parts of config.json that decide the numbers (paths of outputs, tracking and progress display do not).
COMPARED_SECTIONS = ("method", "method_cfg", "data", "train", "eval")


class RunFolderConflict(ConfigError):
    """The run folder holds a run that this command may not continue or overwrite (a usage error: exit 2);
    `fixes` are the flags that resolve it (the CLI turns them into exact commands)."""

    def __init__(self, message: str, fixes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes


@dataclass
class FolderState:
    """The state of one run folder and, when it holds a config, how it differs from the command's."""

    run_dir: Path
    state: str
    differences: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None
    #: The saved config.json (None when absent).
    saved: dict[str, Any] | None = None

    @property
    def same_settings(self) -> bool:
        return not self.differences


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc.get(k) for k in COMPARED_SECTIONS}
    out["train"] = {k: v for k, v in (out.get("train") or {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
    return out


def differences(saved: dict[str, Any], current: dict[str, Any], limit: int = 4) -> list[str]:
    """`section.key: old -> new` for every setting that differs (at most `limit`, then a count)."""
    a, b = _comparable(saved), _comparable(json.loads(json.dumps(current, default=str)))
    out = []
    for section in COMPARED_SECTIONS:
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    out.append(f"{section}.{key}: {x.get(key)!r} -> {y.get(key)!r}")
        elif x != y:
            out.append(f"{section}: {x!r} -> {y!r}")
    if len(out) > limit:
        out = out[:limit] + [f"{len(out) - limit} more"]
    return out


def inspect(cfg: RunConfig) -> FolderState:
    """Read the run folder of `cfg` (nothing is written)."""
    run_dir = cfg.run_dir
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return FolderState(run_dir, ABSENT)
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{config_path} is unreadable ({exc}); start over with --restart (the folder is moved "
                         "aside, not deleted)") from None
    if not isinstance(saved, dict):
        raise BenchError(f"{config_path} is not a run configuration (a JSON {type(saved).__name__}); start over "
                         "with --restart (the folder is moved aside, not deleted)")
    if (run_dir / "metrics.json").is_file():
        state = FINISHED
    elif (run_dir / "checkpoints" / "last.pt").is_file():
        state = STARTED
    else:
        state = UNSTARTED
    id_file = run_dir / "mlflow_run_id.txt"
    run_id = id_file.read_text().strip() or None if id_file.is_file() else None
    return FolderState(run_dir, state, differences(saved, cfg.to_dict()), run_id, saved)


def replaced_name(run_dir: Path, now: float | None = None) -> Path:
    """A free sibling name for a folder moved aside: `seed0.replaced-20250101-120000` (then `-2`, `-3`...)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    n = 2
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{n}")
        n += 1
    return target


def move_aside(run_dir: Path) -> Path:
    """Rename `run_dir` to a free `.replaced-<time>` sibling; returns the new path."""
    target = replaced_name(run_dir)
    run_dir.rename(target)
    log.info("moved the previous run %s aside to %s", run_dir, target)
    return target


@dataclass
class Decision:
    """What run_one does with the folder: start a new run, continue it, or keep it as it is."""

    action: str  # "new" | "again" | "resume" | "keep"
    state: FolderState
    #: MLflow run to continue (same settings), or None for a new MLflow run.
    resume_run_id: str | None = None
    #: The previous MLflow run, superseded by the new one (a different config, or a --restart).
    replaced_run_id: str | None = None
    #: Where --restart moved the previous folder.
    moved_to: Path | None = None
    #: eval.* settings a resume changes ({key: [old, new]}): a trained run re-scored with corrected settings.
    eval_changes: dict[str, list[Any]] = field(default_factory=dict)


def decide(cfg: RunConfig, *, resume: bool = False, restart: bool = False) -> Decision:
    """The action for `cfg`'s folder under --resume/--restart; RunFolderConflict when neither applies.

    --restart moves an existing folder aside here (the only side effect); everything else only reads.
    """
    st = inspect(cfg)
    label = f"{cfg.method}/seed{cfg.seed}"
    if restart and st.state != ABSENT:
        moved = move_aside(st.run_dir)
        return Decision("new", st, replaced_run_id=st.mlflow_run_id, moved_to=moved)
    if st.state == ABSENT:
        if resume:
            log.warning("--resume: %s has no run yet (no config.json, no checkpoints/last.pt); starting %s from "
                        "the beginning", st.run_dir, label)
        return Decision("new", st)
    if st.state == UNSTARTED:
        # Nothing was saved: start again in place (the same MLflow run when the settings are the same).
        log.info("%s: the previous attempt stopped before its first checkpoint (nothing to keep); starting %s again%s",
                 st.run_dir, label, "" if st.same_settings else f" with the new settings ({'; '.join(st.differences)})")
        if resume:
            log.warning("--resume: %s has no checkpoints/last.pt; starting %s from the beginning", st.run_dir, label)
        if st.same_settings:
            return Decision("again", st, resume_run_id=st.mlflow_run_id)
        return Decision("again", st, replaced_run_id=st.mlflow_run_id)
    what = "a finished" if st.state == FINISHED else "a started"
    if not st.same_settings and resume and st.state == STARTED:
        changes = eval_changes(st.saved, cfg.to_dict())
        if changes and (set(changes) <= set(EVAL_FIELDS_CHANGEABLE_MIDWAY) or training_finished(st.run_dir)):
            return Decision("resume", st, resume_run_id=st.mlflow_run_id, eval_changes=changes)
        if changes:
            raise RunFolderConflict(
                f"{st.run_dir} holds a started run of {label} whose training has not finished; --resume may change "
                f"only eval.{', eval.'.join(EVAL_FIELDS_CHANGEABLE_MIDWAY)} before that, the other evaluation "
                f"settings once training is over ({'; '.join(st.differences)}); resume with the same settings, or "
                "start over with --restart", fixes=("--restart",))
    if not st.same_settings:
        raise RunFolderConflict(
            f"{st.run_dir} holds {what} run of {label} with other settings ({'; '.join(st.differences)}); "
            "start over with --restart (moves the old folder aside, deletes nothing) or write the new run "
            "elsewhere with --out DIR", fixes=("--restart",))
    if st.state == FINISHED:
        return Decision("keep", st)
    if resume:
        return Decision("resume", st, resume_run_id=st.mlflow_run_id)
    raise RunFolderConflict(f"{st.run_dir} holds a started run of {label} (checkpoints/last.pt, no metrics.json); "
                            "continue it with --resume, or start over with --restart (moves the old folder aside)",
                            fixes=("--resume", "--restart"))


#: Evaluation settings a resume may change while training is still going (they decide memory use, not which images
#: are scored or how): a run whose in-training evaluation failed on them continues with a corrected value.
EVAL_FIELDS_CHANGEABLE_MIDWAY = ("batch_size",)


def eval_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """{key: [old, new]} of the eval settings that differ, when nothing but eval settings differs; else {}."""
    a, b = _comparable(saved), _comparable(json.loads(json.dumps(current, default=str)))
    if any(a.get(k) != b.get(k) for k in COMPARED_SECTIONS if k != "eval"):
        return {}
    old, new = a.get("eval"), b.get("eval")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return {}
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}


def training_finished(run_dir: Path) -> bool:
    """True when checkpoints/last.pt records a finished training loop (read memory-mapped: no weights loaded)."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not last.is_file():
        return False
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: the resume itself reports it, naming the file
        return False
    return bool(isinstance(state, dict) and isinstance(state.get("loop"), dict) and state["loop"].get("finished"))

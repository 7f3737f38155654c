"""One run = (method, dataset, seed): resolve the config, train, evaluate, track. And many runs in a row.

`run_one` owns the run directory `<out>/<dataset>/<method>/seed<N>/`:
config.json, checkpoints/{last,best}.pt, history.json, metrics.json, samples/, eval/, mlflow_run_id.txt.
A crashed run ends FAILED in MLflow with its error, and `--resume` continues it (same MLflow run).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from bench import seeding
from bench.checkpoint import atomic_write_bytes, atomic_write_json, remove_stale_temps
from bench.config import RESUMABLE_TRAIN_FIELDS, SECTIONS, RunConfig, build_section, split_overrides
from bench.errors import BenchError, CheckpointError, ConfigError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Outcome of one run."""

    method: str
    dataset: str
    seed: int
    status: str  # finished | failed | pruned
    run_dir: Path
    mlflow_run_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # {"last": {"fid": ..}, "best": {"fid": .., "epoch": n}}
    error: str | None = None
    seconds: float = 0.0
    #: Metrics of the last evaluation that could not be computed, with the reason (e.g. a 1-image test split;
    #: the run folder shown as `<run>`).
    unavailable: dict[str, str] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def build_run_config(method: str, dataset: str, seed: int = 0, preset: str = "paper",
                     overrides: Mapping[str, Any] | None = None, *, data_root: str | None = None,
                     direction: str | None = None, out: str = "runs", device: str | None = None,
                     tracking_uri: str | None = None, study: str | None = None, trial: int | None = None,
                     run_name_suffix: str | None = None, inception_weights: str | None = None,
                     seg_weights: str | None = None) -> RunConfig:
    """Paper defaults of `method` -> preset -> overrides, validated, plus data/train/eval sections."""
    import methods
    from bench.data import get_spec

    cls = methods.get(method)
    spec = get_spec(dataset)  # validates the name
    method_over, sections = split_overrides(dict(overrides or {}), cls.Config)
    method_cfg = cls.make_config(preset, method_over)
    seed = seeding.check_seed(seed)
    data_over = dict(sections["data"])
    if data_root is not None:
        data_over.setdefault("root", data_root)
    if direction is not None:
        given = data_over.get("direction")
        if given is not None and spec.normalize_direction(str(given)) != spec.normalize_direction(direction):
            raise ConfigError(f"--direction {direction} and --set data.direction={given} disagree; give the "
                              "direction once (either flag)")
        data_over.setdefault("direction", direction)
    train_over = dict(sections["train"])
    if device is not None:
        train_over.setdefault("device", device)
    eval_over = dict(sections["eval"])
    if inception_weights is not None:
        eval_over.setdefault("inception_weights", inception_weights)
    if seg_weights is not None:
        eval_over.setdefault("seg_weights", seg_weights)
    # Canonical direction name ("label2photo", "cat2dog"), validated here so a typo fails before training.
    data_over["direction"] = spec.normalize_direction(data_over.get("direction"))
    built = {name: build_section(SECTIONS[name], over) for name, over in
             (("data", data_over), ("train", train_over), ("eval", eval_over))}
    return RunConfig(method=method, dataset=dataset, seed=int(seed), preset=preset, method_cfg=method_cfg,
                     out=str(out), tracking_uri=tracking_uri, study=study, trial=trial,
                     run_name_suffix=run_name_suffix, **built)


def method_fits(method: str, dataset: str) -> str | None:
    """None when `method` can run on `dataset`; otherwise the reason it is skipped."""
    import methods
    from bench.data import get_spec

    cls = methods.get(method)
    if cls.paired and not get_spec(dataset).aligned:
        return f"{method} needs paired (aligned) data; {dataset} is unpaired"
    return None


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten_results(prefix: str, results: dict[str, Any]) -> dict[str, float]:
    """MetricResult dicts -> MLflow metrics `<prefix>/<metric>`, `_std`, `_<detail>`."""
    out: dict[str, float] = {}
    for name, r in results.items():
        if r.get("value") is None:
            continue
        out[f"{prefix}/{name}"] = float(r["value"])
        if r.get("std") is not None:
            out[f"{prefix}/{name}_std"] = float(r["std"])
        for k, v in (r.get("details") or {}).items():
            if isinstance(v, (int, float)):
                out[f"{prefix}/{name}_{k}"] = float(v)
    return out


def _summary(results: dict[str, Any]) -> dict[str, float | None]:
    return {k: v.get("value") for k, v in results.items()}


def _finished_result(cfg: RunConfig, run_dir: Path, t_start: float) -> RunResult:
    """The RunResult of a run that already wrote its metrics.json."""
    doc = _read_record(run_dir / "metrics.json")
    run_id_file = run_dir / "mlflow_run_id.txt"
    result = RunResult(cfg.method, cfg.dataset, cfg.seed, "finished", run_dir,
                       _read_record(run_id_file, json_doc=False).strip() if run_id_file.is_file() else None)
    try:
        _scores_from_doc(result, doc)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"run record {run_dir / 'metrics.json'} is incomplete (no {exc}); restore it, or "
                              "delete it and run again with --resume to re-evaluate the trained run") from None
    result.seconds = time.perf_counter() - t_start
    return result


def _unavailable_reasons(results: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """Why each metric of an evaluation could not be computed, with the run folder shortened to `<run>`."""
    return {k: v["unavailable"].replace(str(run_dir), "<run>") for k, v in results.items() if v.get("unavailable")}


def _scores_from_doc(result: RunResult, doc: dict[str, Any]) -> None:
    """Fill `result.metrics` and `result.unavailable` from a metrics.json document (just written or earlier)."""
    last, best = doc["last"], doc.get("best") or doc["last"]
    result.metrics = {"last": {**_summary(last["metrics"]), "epoch": last["epoch"]},
                      "best": {**_summary(best["metrics"]), "epoch": best["epoch"]}}
    result.unavailable = _unavailable_reasons(last["metrics"], result.run_dir)


def run_one(cfg: RunConfig, *, resume: bool = False, parent_run_id: str | None = None,
            on_eval: Callable[[int, dict[str, float]], None] | None = None,
            swept: Mapping[str, Any] | None = None, progress=None) -> RunResult:
    """Train and evaluate one (method, dataset, seed); track in MLflow; never lose what was written."""
    import methods
    from bench.data import load_pairs
    from bench.evaluation import Evaluator
    from bench.tracking import Tracker
    from bench.train import Trainer, load_best_into, load_last_nets_into

    t_start = time.perf_counter()
    run_dir = cfg.run_dir
    config_path = run_dir / "config.json"
    if config_path.is_file() and not resume:
        done = (run_dir / "metrics.json").is_file()
        raise BenchError(f"{run_dir} already holds a {'finished' if done else 'started'} run; "
                         "pass --resume to continue it, or choose another --out")
    eval_changes: dict[str, list[Any]] = {}
    if resume and config_path.is_file():
        eval_changes = _check_resume(cfg, run_dir)
        if (run_dir / "metrics.json").is_file():  # finished before: keep it, do not re-evaluate
            log.info("%s already finished; kept as it is (delete metrics.json to re-evaluate)", run_dir)
            return _finished_result(cfg, run_dir, t_start)
        for stale in remove_stale_temps(run_dir) + remove_stale_temps(run_dir / "checkpoints"):
            log.info("removed %s, left by a write that was killed", stale)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not config_path.is_file():
        atomic_write_json(config_path, cfg.to_dict())
    elif eval_changes:
        # Training is over and only the evaluation changes: record the new settings (and the replaced ones).
        saved = _read_record(config_path)
        log.info("%s: continuing with changed evaluation settings: %s", run_dir,
                 ", ".join(f"eval.{k}: {old!r} -> {new!r}" for k, (old, new) in eval_changes.items()))
        atomic_write_json(config_path, {**cfg.to_dict(), "replaced_eval": [*saved.get("replaced_eval", []),
                                                                           saved.get("eval")]})

    run_id_file = run_dir / "mlflow_run_id.txt"
    prev_run_id = _read_record(run_id_file, json_doc=False).strip() if resume and run_id_file.is_file() else None
    tags = {"bench.method": cfg.method, "bench.dataset": cfg.dataset, "bench.seed": str(cfg.seed),
            "bench.direction": cfg.data.direction or "default", "bench.preset": cfg.preset,
            "bench.git_commit": git_commit(), "bench.run_dir": str(run_dir.resolve()),
            "bench.config_hash": cfg.config_hash(), "bench.status": "running",
            "bench.device": cfg.train.device}
    if cfg.study:
        tags["bench.study"] = cfg.study
    if cfg.trial is not None:
        tags["bench.trial"] = str(cfg.trial)
    if swept:
        tags["bench.swept"] = json.dumps(dict(swept), sort_keys=True, default=str)
    params = cfg.flat_params()
    if eval_changes:  # MLflow params are immutable: the changed eval settings go to a tag instead
        params = {k: v for k, v in params.items() if k.removeprefix("eval.") not in eval_changes}
        tags["bench.eval_changed_on_resume"] = json.dumps(eval_changes, sort_keys=True, default=str)
    tracker = Tracker.start(tracking_uri=cfg.tracking_uri, experiment=cfg.dataset, run_name=cfg.run_name,
                            run_id=prev_run_id, tags=tags, params=params, parent_run_id=parent_run_id)
    if tracker.run_id and tracker.run_id != prev_run_id:
        atomic_write_bytes(run_id_file, (tracker.run_id + "\n").encode())
    result = RunResult(cfg.method, cfg.dataset, cfg.seed, "failed", run_dir, tracker.run_id)
    try:
        tracker.log_artifact(config_path)
        device = resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seeding.configure_determinism(cfg.train.deterministic)
        seeding.seed_everything(cfg.seed)
        method = methods.registry.get(cfg.method)(cfg.method_cfg, device=device)
        described = method.describe()
        if described:
            tracker.set_tags({f"bench.uses.{k}": json.dumps(v) if not isinstance(v, str) else v
                              for k, v in described.items()})
            atomic_write_json(run_dir / "uses.json", described)
        mc = cfg.method_cfg
        train_ds = load_pairs(cfg.dataset, "train", root=cfg.data.root, direction=cfg.data.direction,
                              paired=method.paired, load_size=mc.load_size, crop_size=mc.crop_size,
                              flip=mc.flip, seed=cfg.seed)
        evaluator = Evaluator(cfg, run_dir, device)
        trainer = Trainer(cfg, method, train_ds, evaluator, tracker, run_dir, on_eval=on_eval)
        trainer.setup(resume=resume)
        trainer.run(progress)
        state = trainer.state

        # Final scores on the full test split: last weights, then best weights.
        metrics_doc: dict[str, Any] = {"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed,
                                       "preset": cfg.preset, "direction": cfg.data.direction or "default",
                                       "config_hash": cfg.config_hash(), "history": state.history}
        method.eval()
        last_epoch = state.epoch - 1 if state.batch_pos == 0 else state.epoch
        last = evaluator.full(method, "last")
        metrics_doc["last"] = {"epoch": last_epoch, **last}
        tracker.log_metrics({**_flatten_results("last", last["metrics"]), "last/epoch": last_epoch}, step=last_epoch)
        best_epoch = int(state.best["epoch"]) if state.best else last_epoch
        recovered = None
        if cfg.eval.score_best and best_epoch != last_epoch:
            try:
                load_best_into(method, run_dir)
            except CheckpointError as exc:
                # The best epoch's weights are gone; the last ones are loaded: score "best" with them, saying so.
                recovered = (f"{exc}. The best epoch by the training history was {best_epoch}; its weights are "
                             f"lost, so 'best' is scored with the last weights (epoch {last_epoch})")
                log.warning("%s", recovered)
                load_last_nets_into(method, run_dir)  # a best.pt that did not fit may have been loaded in part
                best_epoch = last_epoch
                best = last
            else:
                best = evaluator.full(method, "best")
        else:
            best = last
        metrics_doc["best"] = {"epoch": best_epoch, "selected_by": cfg.train.select_metric,
                               "note": "selected on the held-out test subset (as the papers did)", **best}
        if recovered:
            metrics_doc["best"].update(recovered=recovered, history_best_epoch=int(state.best["epoch"]),
                                       selected_by="last (best.pt unusable)")
            tracker.set_tags({"bench.best_recovered": recovered[:5000]})
        tracker.log_metrics({**_flatten_results("best", best["metrics"]), "best/epoch": best_epoch}, step=best_epoch)
        if method.two_way:
            # Two-way methods are also scored B->A, with the weights now loaded (best if it was rescored).
            weights = "best" if best is not last else "last"
            rev_scores = Evaluator(cfg, run_dir, device, direction="BtoA").full(method, weights)
            metrics_doc["reverse"] = {"direction": "BtoA", "weights": weights, **rev_scores}
            tracker.log_metrics(_flatten_results("reverse", rev_scores["metrics"]), step=best_epoch)
        for name, r in last["metrics"].items():
            if r.get("fingerprint"):
                tracker.set_tags({f"bench.protocol.{name}": json.dumps(r["fingerprint"], sort_keys=True, default=str)[:5000]})
        for name, reason in _unavailable_reasons(last["metrics"], run_dir).items():  # tables say why a cell is empty
            tracker.set_tags({f"bench.unavailable.{name}": reason[:5000]})
        atomic_write_json(run_dir / "metrics.json", metrics_doc)
        tracker.log_artifact(run_dir / "metrics.json")
        for sub in ("inputs", "outputs"):
            d = run_dir / "eval" / "last" / "test" / sub
            if d.is_dir():
                tracker.log_artifacts(d, f"test/{sub}")
        tracker.set_tags({"bench.status": "finished"})
        tracker.finish("FINISHED")
        result.status = "finished"
        (run_dir / "error.txt").unlink(missing_ok=True)  # an earlier attempt's error no longer applies
        _scores_from_doc(result, metrics_doc)
    except BaseException as exc:
        if _is_pruned(exc):
            tracker.set_tags({"bench.status": "pruned"})
            tracker.finish("KILLED", error="pruned by the study's pruner")
            result.status = "pruned"
            raise
        msg = f"{type(exc).__name__}: {exc}"
        result.error = msg
        tracker.set_tags({"bench.status": "failed"})
        tracker.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", error=msg)
        _write_error(run_dir / "error.txt", traceback.format_exc())
        raise
    finally:
        result.seconds = time.perf_counter() - t_start
    return result


def _read_record(path: Path, json_doc: bool = True) -> Any:
    """A run record (config.json, metrics.json, mlflow_run_id.txt); CheckpointError naming it when unreadable."""
    try:
        text = path.read_text()
        return json.loads(text) if json_doc else text
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"run record {path} is unreadable ({type(exc).__name__}: {exc}); restore it from a "
                              "copy, or move the run folder aside and run again") from None


#: Evaluation settings a resume may change while training is still going (they decide memory use, not which images
#: are scored or how): a run whose in-training evaluation failed on them continues with a corrected value.
EVAL_FIELDS_CHANGEABLE_MIDWAY = ("batch_size",)


def _check_resume(cfg: RunConfig, run_dir: Path) -> dict[str, list[Any]]:
    """Refuse a resume under other settings. Evaluation settings may change once training is over (a run whose
    final evaluation failed is re-scored with corrected settings), and `EVAL_FIELDS_CHANGEABLE_MIDWAY` at any time;
    returns those changes {key: [old, new]}."""
    config_path = run_dir / "config.json"
    saved = _read_record(config_path)
    if not isinstance(saved, dict):
        raise CheckpointError(f"run record {config_path} is not a run configuration; restore it from a copy, or "
                              "move the run folder aside and run again")
    current = json.loads(json.dumps(cfg.to_dict(), default=str))
    for section in (saved, current):
        section["train"] = {k: v for k, v in (section.get("train") or {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
    changes: dict[str, list[Any]] = {}
    for key in ("method_cfg", "data", "train", "eval"):
        if saved.get(key) == current[key]:
            continue
        if key == "eval" and isinstance(saved.get("eval"), dict) and not (run_dir / "metrics.json").is_file():
            diff = {k: [saved["eval"].get(k), v] for k, v in current["eval"].items() if saved["eval"].get(k) != v}
            if set(diff) <= set(EVAL_FIELDS_CHANGEABLE_MIDWAY) or _training_finished(run_dir):
                changes = diff
                continue
        hint = (f" (while training, only eval.{', eval.'.join(EVAL_FIELDS_CHANGEABLE_MIDWAY)} may change; the other "
                "evaluation settings once training has finished)") if key == "eval" else ""
        raise ConfigError(f"--resume: the {key} settings differ from {config_path}{hint}; resume with the same "
                          "options, or start a new run with another --out")
    return changes


def _training_finished(run_dir: Path) -> bool:
    """True when last.pt records a finished training loop (read memory-mapped: no weights are loaded)."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return False
    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: the resume itself reports it, naming the file
        return False
    return bool(isinstance(state, dict) and (state.get("loop") or {}).get("finished"))


def _write_error(path: Path, text: str) -> None:
    """Record a failure's traceback; best effort (a full disk must not hide the real error behind an empty file)."""
    try:
        atomic_write_bytes(path, text.encode())
    except (OSError, BenchError) as exc:
        log.warning("could not write %s (%s); the error is in the log above", path, exc)


def _is_pruned(exc: BaseException) -> bool:
    try:
        import optuna
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, optuna.TrialPruned)

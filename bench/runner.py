"""One run = (method, dataset, seed): resolve the config, train, evaluate, track. And many runs in a row.

`run_one` owns the run directory `<out>/<dataset>/<method>/seed<N>/`:
config.json, checkpoints/{last,best}.pt, history.json, metrics.json, samples/, eval/, mlflow_run_id.txt.
A crashed run ends FAILED in MLflow with its error, and `--resume` continues it (same MLflow run).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from bench import seeding
from bench.checkpoint import atomic_write_json
from bench.config import RESUMABLE_TRAIN_FIELDS, SECTIONS, RunConfig, build_section, split_overrides
from bench.errors import BenchError, ConfigError
from bench.tracking import git_commit  # noqa: F401 - the run's commit tag; importable from here too

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
    from bench.evaluation import check_metrics

    cls = methods.get(method)
    spec = get_spec(dataset)  # validates the name
    method_over, sections = split_overrides(dict(overrides or {}), cls.Config, method=method)
    method_cfg = cls.make_config(preset, method_over)
    data_over = dict(sections["data"])
    if data_root is not None:
        data_over.setdefault("root", data_root)
    if direction is not None:
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
    cfg = RunConfig(method=method, dataset=dataset, seed=int(seed), preset=preset, method_cfg=method_cfg,
                    out=str(out), tracking_uri=tracking_uri, study=study, trial=trial,
                    run_name_suffix=run_name_suffix, **built)
    # What is scored depends on dataset, direction and method together: checked here, before data or networks.
    check_metrics(cfg, cls)
    return cfg


def method_fits(method: str, dataset: str) -> str | None:
    """None when `method` can run on `dataset`; otherwise the reason it is skipped."""
    import methods
    from bench.data import get_spec

    cls = methods.get(method)
    if cls.paired and not get_spec(dataset).aligned:
        return f"{method} needs paired (aligned) data; {dataset} is unpaired"
    return None


def _flatten_results(prefix: str, results: dict[str, Any]) -> dict[str, float]:
    """MetricResult dicts -> MLflow metrics `<prefix>/<metric key>`, `_std`, `_<detail>` (keys with units)."""
    from bench.tracking import metric_key

    out: dict[str, float] = {}
    for name, r in results.items():
        if r.get("value") is None:
            continue
        key = metric_key(name, prefix)
        out[key] = float(r["value"])
        if r.get("std") is not None:
            out[f"{key}_std"] = float(r["std"])
        for k, v in (r.get("details") or {}).items():
            if isinstance(v, (int, float)):
                out[f"{key}_{k}"] = float(v)
    return out


def non_default_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings of `cfg` that differ from its method's `preset` defaults (`--set` and flags), flattened."""
    from bench.tracking import flatten

    try:
        base = build_run_config(cfg.method, cfg.dataset, cfg.seed, cfg.preset)
    except BenchError:
        return {}
    ours, theirs = flatten(cfg.algorithm_dict()), flatten(base.algorithm_dict())
    return {k.removeprefix("method_cfg."): v for k, v in ours.items()
            if theirs.get(k) != v and not k.startswith("data.root")}


def _settings_text(settings: Mapping[str, Any]) -> str:
    from bench.formatting import human

    return ", ".join(f"{k}={human(v)}" for k, v in sorted(settings.items())) or "none"


#: Params whose config value is a sentinel (0 = "all" / "auto"); the run logs what they resolved to.
_RESOLVED_PARAMS = ("eval.n_test", "train.eval_n", "train.eval_every")


def _resolved_params(cfg: RunConfig, trainer, evaluator) -> dict[str, str]:
    n_src = len(evaluator.data.sources)
    return {"eval.n_test": str(n_src if cfg.eval.n_test <= 0 else min(cfg.eval.n_test, n_src)),
            "train.eval_n": str(n_src if cfg.train.eval_n <= 0 else min(cfg.train.eval_n, n_src)),
            "train.eval_every": str(trainer.eval_every)}


def _log_dataset(tracker, cfg: RunConfig, train_ds, evaluator) -> None:
    """The dataset as an MLflow input: name (+ direction), root folder, split sizes and a content digest."""
    from bench.tracking import files_digest

    test = evaluator.data
    paths = [r.path for r in (*train_ds.A, *train_ds.B)] + test.sources.paths + test.targets.paths
    profile = {"train_A": train_ds.len_A, "train_B": train_ds.len_B, "test_A": len(test.sources),
               "test_B": len(test.targets), "direction": train_ds.direction}
    if cfg.data.max_train:
        profile["max_train"] = cfg.data.max_train
    try:
        digest = files_digest(paths, train_ds.root)
    except OSError as exc:
        log.warning("dataset digest of %s not computed: %s", train_ds.root, exc)
        digest = "unknown"
    tracker.log_input(f"{cfg.dataset}:{train_ds.direction}", digest=digest, source=train_ds.root.resolve(),
                      profile=profile)


def _summary(results: dict[str, Any]) -> dict[str, float | None]:
    return {k: v.get("value") for k, v in results.items()}


def _finished_result(cfg: RunConfig, run_dir: Path, t_start: float) -> RunResult:
    """The RunResult of a run that already wrote its metrics.json."""
    doc = json.loads((run_dir / "metrics.json").read_text())
    run_id_file = run_dir / "mlflow_run_id.txt"
    result = RunResult(cfg.method, cfg.dataset, cfg.seed, "finished", run_dir,
                       run_id_file.read_text().strip() if run_id_file.is_file() else None)
    _scores_from_doc(result, doc)
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
            swept: Mapping[str, Any] | None = None, progress=None, kind: str | None = None) -> RunResult:
    """Train and evaluate one (method, dataset, seed); track in MLflow; never lose what was written.

    `kind` is the run's `bench.kind` tag: "trial" for the seeds of a study trial, else "benchmark" by default.
    `progress` is a `bench.progress` run handle (or None).
    """
    import methods
    from bench.data import load_pairs
    from bench.evaluation import Evaluator
    from bench.tracking import TAG_DEVICE, TAG_OVERRIDES, Tracker, protocol_tags, run_name
    from bench.train import Trainer, load_best_into

    t_start = time.perf_counter()
    run_dir = cfg.run_dir
    config_path = run_dir / "config.json"
    if config_path.is_file() and not resume:
        done = (run_dir / "metrics.json").is_file()
        raise BenchError(f"{run_dir} already holds a {'finished' if done else 'started'} run; "
                         "pass --resume to continue it, or choose another --out")
    if resume and config_path.is_file():
        saved = json.loads(config_path.read_text())
        current = json.loads(json.dumps(cfg.to_dict(), default=str))
        for section in (saved, current):
            section["train"] = {k: v for k, v in section.get("train", {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
        for key in ("method_cfg", "data", "train", "eval"):
            if saved.get(key) != current[key]:
                raise ConfigError(f"--resume: the {key} settings differ from {config_path}; resume with the same "
                                  "options, or start a new run with another --out")
        if (run_dir / "metrics.json").is_file():  # finished before: keep it, do not re-evaluate
            log.info("%s already finished; kept as it is (delete metrics.json to re-evaluate)", run_dir)
            return _finished_result(cfg, run_dir, t_start)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, cfg.to_dict())

    run_id_file = run_dir / "mlflow_run_id.txt"
    prev_run_id = run_id_file.read_text().strip() if resume and run_id_file.is_file() else None
    try:
        device_used = str(resolve_device(cfg.train.device))
    except ConfigError:  # raised again below, inside the tracked run, so it ends FAILED with the reason
        device_used = cfg.train.device
    settings = non_default_settings(cfg)
    tags = {"bench.method": cfg.method, "bench.dataset": cfg.dataset, "bench.seed": str(cfg.seed),
            "bench.direction": cfg.data.direction or "default", "bench.preset": cfg.preset,
            "bench.git_commit": git_commit(), "bench.run_dir": str(run_dir.resolve()),
            "bench.config_hash": cfg.config_hash(), "bench.status": "running",
            TAG_DEVICE: device_used, TAG_OVERRIDES: _settings_text(settings)}
    if cfg.study:
        tags["bench.study"] = cfg.study
    if cfg.trial is not None:
        tags["bench.trial"] = str(cfg.trial)
    if swept:
        tags["bench.swept"] = json.dumps(dict(swept), sort_keys=True, default=str)
    params = {k: v for k, v in cfg.flat_params().items() if k not in _RESOLVED_PARAMS}  # logged once resolved
    name = run_name(cfg.method, cfg.seed, cfg.preset, settings, cfg.run_name_suffix)
    tracker = Tracker.start(tracking_uri=cfg.tracking_uri, experiment=cfg.dataset, run_name=name,
                            run_id=prev_run_id, tags=tags, params=params, parent_run_id=parent_run_id,
                            kind=kind or ("trial" if cfg.study else "benchmark"), system_metrics=True)
    if tracker.run_id:
        run_id_file.write_text(tracker.run_id + "\n")
    if progress:
        progress.set_name(name)
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
        tracker.log_params(_resolved_params(cfg, trainer, evaluator))
        _log_dataset(tracker, cfg, train_ds, evaluator)
        trainer.setup(resume=resume)
        trainer.run(progress)
        state = trainer.state

        # Final scores on the full test split: last weights, then best weights.
        metrics_doc: dict[str, Any] = {"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed,
                                       "preset": cfg.preset, "direction": cfg.data.direction or "default",
                                       "config_hash": cfg.config_hash(), "history": state.history}
        method.eval()
        last_epoch = state.epoch - 1 if state.batch_pos == 0 else state.epoch
        # Summary metrics (one number per run) sit at step 0: MLflow charts them as values, not curve points.
        if progress:
            progress.phase(f"final evaluation: last weights on {_resolved_params(cfg, trainer, evaluator)['eval.n_test']} "
                           "test images")
        last = evaluator.full(method, "last")
        metrics_doc["last"] = {"epoch": last_epoch, **last}
        tracker.log_metrics({**_flatten_results("last", last["metrics"]), "last/epoch": last_epoch}, step=0)
        best_epoch = int(state.best["epoch"]) if state.best else last_epoch
        if cfg.eval.score_best and best_epoch != last_epoch:
            if progress:
                progress.phase(f"final evaluation: best weights (epoch {best_epoch})")
            load_best_into(method, run_dir, cfg)
            best = evaluator.full(method, "best")
        else:
            best = last
        metrics_doc["best"] = {"epoch": best_epoch, "selected_by": cfg.train.select_metric,
                               "note": "selected on the held-out test subset (as the papers did)", **best}
        tracker.log_metrics({**_flatten_results("best", best["metrics"]), "best/epoch": best_epoch}, step=0)
        if method.two_way:
            # Two-way methods are also scored B->A, with the weights now loaded (best if it was rescored).
            weights = "best" if best is not last else "last"
            if progress:
                progress.phase(f"final evaluation: reverse direction ({weights} weights)")
            rev_scores = Evaluator(cfg, run_dir, device, direction="BtoA").full(method, weights)
            metrics_doc["reverse"] = {"direction": "BtoA", "weights": weights, **rev_scores}
            tracker.log_metrics(_flatten_results("reverse", rev_scores["metrics"]), step=0)
        fingerprints = {name: r["fingerprint"] for name, r in last["metrics"].items() if r.get("fingerprint")}
        for name, fingerprint in fingerprints.items():
            tracker.set_tags(protocol_tags(name, fingerprint))
        if fingerprints:
            tracker.log_dict(json.loads(json.dumps(fingerprints, default=str)), "protocol.json")
        for name, reason in _unavailable_reasons(last["metrics"], run_dir).items():  # tables say why a cell is empty
            tracker.set_tags({f"bench.unavailable.{name}": reason[:5000]})
        atomic_write_json(run_dir / "metrics.json", metrics_doc)
        tracker.log_artifact(run_dir / "metrics.json")
        for sub in ("inputs", "outputs"):
            d = run_dir / "eval" / "last" / "test" / sub
            if d.is_dir():
                tracker.log_artifacts(d, f"test/{sub}")  # the files `bench plot` draws its grids from
        outputs = run_dir / "eval" / "last" / "test" / "outputs"
        for path in sorted(outputs.glob("*.png")) if outputs.is_dir() else []:
            # Stepped images: Compare shows each test image of several runs side by side.
            tracker.log_image(path, key=f"test/{path.stem}", step=last_epoch)
        tracker.set_tags({"bench.status": "finished"})
        tracker.finish("FINISHED")
        result.status = "finished"
        if progress:
            progress.done("finished")
        _scores_from_doc(result, metrics_doc)
    except BaseException as exc:
        if progress:
            progress.done("pruned" if _is_pruned(exc) else "failed")
        if _is_pruned(exc):
            tracker.set_tags({"bench.status": "pruned"})
            tracker.finish("KILLED", error="pruned by the study's pruner")
            result.status = "pruned"
            raise
        msg = f"{type(exc).__name__}: {exc}"
        result.error = msg
        tracker.set_tags({"bench.status": "failed"})
        tracker.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", error=msg)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
    finally:
        result.seconds = time.perf_counter() - t_start
    return result


def _is_pruned(exc: BaseException) -> bool:
    try:
        import optuna
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, optuna.TrialPruned)

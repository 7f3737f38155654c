"""One run = (method, dataset, seed): resolve the config, train, evaluate, track. And many runs in a row.

`run_one` owns the run directory `<out>/<dataset>/<method>/seed<N>/`:
config.json, checkpoints/{last,best}.pt, history.json, metrics.json, samples/, eval/, mlflow_run_id.txt,
tracking.json (the absolute tracking URI and run id, for later commands run from elsewhere).
Order: settings, device and data are checked (`preflight`) before the folder or an MLflow run exists; then
bench.run_folder decides what an existing folder allows (start again, resume, keep, or refuse with the fix).
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

from bench import precision, seeding, threads
from bench.checkpoint import atomic_write_json, atomic_write_text, remove_stale_temps
from bench.config import SECTIONS, RunConfig, build_section, config_hash_of, split_overrides
from bench.errors import BenchError, CheckpointError, ConfigError
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
    #: A finished run with the same settings found in its folder and kept as it is (nothing was trained).
    kept: bool = False
    #: The metric that selected the best checkpoint (train.select_metric).
    selected_by: str = "fid"

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    @property
    def status_text(self) -> str:
        return "finished (kept)" if self.kept else self.status


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
    method_cfg = cls.make_config(preset, method_over, dataset=dataset)
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
    doc = read_record(run_dir / "metrics.json")
    run_id_file = run_dir / "mlflow_run_id.txt"
    result = RunResult(cfg.method, cfg.dataset, cfg.seed, "finished", run_dir,
                       read_record(run_id_file, json_doc=False).strip() if run_id_file.is_file() else None,
                       kept=True, selected_by=cfg.train.select_metric)
    try:
        _scores_from_doc(result, doc)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"run record {run_dir / 'metrics.json'} is incomplete (no {exc}); restore it, or "
                              "delete it and run again with --resume to re-evaluate the trained run") from None
    result.seconds = time.perf_counter() - t_start
    return result


def recorded_result(cfg: RunConfig, seconds: float = 0.0, kept: bool = False) -> RunResult:
    """The RunResult of a finished run, read back from its folder (a launcher ran it in another process)."""
    result = _finished_result(cfg, cfg.run_dir, time.perf_counter())
    result.seconds, result.kept = seconds, kept
    return result


#: Written next to mlflow_run_id.txt: where the run is tracked, so later commands (`bench eval --run`) log to
#: the same store from any working directory.
TRACKING_RECORD = "tracking.json"


def write_tracking_record(run_dir: Path, tracker) -> None:
    from bench.tracking import absolute_uri

    atomic_write_json(run_dir / TRACKING_RECORD, {"tracking_uri": absolute_uri(tracker.tracking_uri),
                                                  "run_id": tracker.run_id, "experiment_id": tracker.experiment_id})


def mark_replaced(tracker, old_run_id: str, moved_to: Path | None) -> None:
    """Tag the MLflow run a new run replaces, so tables and `mlflow ui` show which one counts."""
    from bench.tracking import TAG_STATUS

    tags = {TAG_STATUS: "replaced", "bench.replaced_by": tracker.run_id or ""}
    if moved_to is not None:
        tags["bench.run_dir"] = str(Path(moved_to).resolve())
    try:
        for key, value in tags.items():
            tracker.client.set_tag(old_run_id, key, value)
        log.info("MLflow run %s marked replaced by %s", old_run_id, tracker.run_id)
    except Exception as exc:  # the old run may live in another store or be deleted: nothing to mark
        log.warning("could not mark the previous MLflow run %s as replaced (%s)", old_run_id, exc)


def _unavailable_reasons(results: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """Why each metric of an evaluation could not be computed, with the run folder shortened to `<run>`."""
    return {k: v["unavailable"].replace(str(run_dir), "<run>") for k, v in results.items() if v.get("unavailable")}


def _scores_from_doc(result: RunResult, doc: dict[str, Any]) -> None:
    """Fill `result.metrics` and `result.unavailable` from a metrics.json document (just written or earlier)."""
    last, best = doc["last"], doc.get("best") or doc["last"]
    result.metrics = {"last": {**_summary(last["metrics"]), "epoch": last["epoch"]},
                      "best": {**_summary(best["metrics"]), "epoch": best["epoch"]}}
    result.unavailable = _unavailable_reasons(last["metrics"], result.run_dir)


def preflight(cfg: RunConfig):
    """Resolve the device and read the data listings of `cfg` before anything is written.

    Returns (device, training dataset, test data); a missing dataset, a bad data root or an unavailable
    device raises here, so a failed start leaves no run folder and no MLflow run behind.
    """
    import methods
    from bench.data import load_pairs
    from bench.evaluation import load_eval_data

    device = resolve_device(cfg.train.device)
    mc = cfg.method_cfg
    cls = methods.get(cfg.method)
    # the official loader's rule (filter, aspect, flip order, sampling, LSeSim's jitter) and data.max_train
    train_ds = load_pairs(cfg.dataset, "train", root=cfg.data.root, direction=cfg.data.direction,
                          paired=cls.paired, load_size=mc.load_size, crop_size=mc.crop_size, flip=mc.flip,
                          seed=cfg.seed, pipeline=cls.pipeline_for(mc), max_items=cfg.data.max_train)
    return device, train_ds, load_eval_data(cfg)


def run_one(cfg: RunConfig, *, resume: bool = False, restart: bool = False, parent_run_id: str | None = None,
            on_eval: Callable[[int, dict[str, float]], None] | None = None,
            swept: Mapping[str, Any] | None = None, progress=None, kind: str | None = None,
            allow_thread_change: bool = False) -> RunResult:
    """Train and evaluate one (method, dataset, seed); track in MLflow; never lose what was written.

    Settings and data are checked first (`preflight`); then the run folder decides (bench.run_folder): a new
    run, the same run started again (nothing was saved), `resume`, or a finished run kept as it is
    (`RunResult.kept`). `restart` moves an existing folder aside and starts over.
    `kind` is the run's `bench.kind` tag: "trial" for the seeds of a study trial, else "benchmark" by default.
    `progress` is a `bench.progress` run handle (or None).
    `train.threads` is resolved (bench.threads.settle) before the folder is compared and recorded;
    `allow_thread_change` lets `resume` continue under an explicit other count, marked not bitwise-continuous.
    """
    import methods
    from bench.evaluation import Evaluator
    from bench.run_folder import decide
    from bench.tracking import TAG_DEVICE, TAG_OVERRIDES, Tracker, protocol_tags, run_name
    from bench.train import Trainer, load_best_into, load_last_nets_into

    t_start = time.perf_counter()
    run_dir = cfg.run_dir
    config_path = run_dir / "config.json"
    device, train_ds, eval_data = preflight(cfg)
    settings = non_default_settings(cfg)  # what the command asked for (an automatic thread count is not one)
    cfg, thread_plan, continuity = threads.settle(cfg, resume=resume, restart=restart,
                                                  allow_change=allow_thread_change)
    decision = decide(cfg, resume=resume, restart=restart)
    if decision.action == "keep":
        log.info("%s already finished with these settings; kept as it is (--restart to train it again)", run_dir)
        return _finished_result(cfg, run_dir, t_start)
    resume = decision.action == "resume"
    eval_changes = decision.eval_changes
    origin_hashes: tuple[str, ...] = ()
    run_dir.mkdir(parents=True, exist_ok=True)
    if decision.action == "again":
        (run_dir / "error.txt").unlink(missing_ok=True)  # the previous attempt's failure; MLflow keeps its error
    if resume:
        for stale in remove_stale_temps(run_dir) + remove_stale_temps(run_dir / "checkpoints"):
            log.info("removed %s, left by a write that was killed", stale)
        saved = read_record(config_path)
        # The checkpoints were written under the saved settings (and any evaluation settings they replaced).
        origin_hashes = tuple({config_hash_of(saved), *(config_hash_of({**saved, "eval": e})
                                                         for e in saved.get("replaced_eval") or [])})
        if eval_changes:
            log.info("%s: continuing with changed evaluation settings: %s", run_dir,
                     ", ".join(f"eval.{k}: {old!r} -> {new!r}" for k, (old, new) in eval_changes.items()))
            atomic_write_json(config_path, {**cfg.to_dict(), "replaced_eval": [*(saved.get("replaced_eval") or []),
                                                                               saved.get("eval")]})
    else:  # a resume keeps config.json as it was (nothing written before is overwritten)
        atomic_write_json(config_path, cfg.to_dict())

    run_id_file = run_dir / "mlflow_run_id.txt"
    prev_run_id = decision.resume_run_id
    device_used = str(device)
    tags = {"bench.method": cfg.method, "bench.dataset": cfg.dataset, "bench.seed": str(cfg.seed),
            "bench.direction": cfg.data.direction or "default", "bench.preset": cfg.preset,
            "bench.git_commit": git_commit(), "bench.run_dir": str(run_dir.resolve()),
            "bench.config_hash": cfg.config_hash(), "bench.status": "running",
            TAG_DEVICE: device_used, TAG_OVERRIDES: _settings_text(settings)}
    effective_threads = threads.apply(thread_plan)
    compute = precision.compute_record(cfg.train, effective_threads,
                                       bitwise_continuous=continuity.get("bitwise_continuous", True),
                                       thread_changes=continuity.get("thread_changes"))
    tags.update(precision.compute_tags(compute))
    log.info("%s: %d intra-op / %d inter-op thread(s) (%s)%s", cfg.run_name, effective_threads["intra_op"],
             effective_threads["inter_op"], thread_plan.rule,
             f"; {precision.describe(compute)}" if precision.describe(compute) else "")
    if cfg.study:
        tags["bench.study"] = cfg.study
    if cfg.trial is not None:
        tags["bench.trial"] = str(cfg.trial)
    if swept:
        tags["bench.swept"] = json.dumps(dict(swept), sort_keys=True, default=str)
    name = run_name(cfg.method, cfg.seed, cfg.preset, settings, cfg.run_name_suffix)
    params = {k: v for k, v in cfg.flat_params().items() if k not in _RESOLVED_PARAMS}  # logged once resolved
    if eval_changes:  # MLflow params are immutable: the changed eval settings go to a tag instead
        params = {k: v for k, v in params.items() if k.removeprefix("eval.") not in eval_changes}
        tags["bench.eval_changed_on_resume"] = json.dumps(eval_changes, sort_keys=True, default=str)
    start = dict(tracking_uri=cfg.tracking_uri, experiment=cfg.dataset, run_name=name, tags=tags,
                 params=params, parent_run_id=parent_run_id, kind=kind or ("trial" if cfg.study else "benchmark"),
                 system_metrics=True)
    try:
        tracker = Tracker.start(run_id=prev_run_id, **start)
    except BenchError:
        if decision.action != "again" or prev_run_id is None:
            raise
        # Starting again after a failed start: the old MLflow run may be gone (another store): a new one then.
        tracker = Tracker.start(**start)
    if tracker.run_id:
        atomic_write_text(run_id_file, tracker.run_id + "\n")
        write_tracking_record(run_dir, tracker)
    if decision.replaced_run_id and decision.replaced_run_id != tracker.run_id:
        mark_replaced(tracker, decision.replaced_run_id, decision.moved_to)
    if progress:
        progress.set_name(name)
    result = RunResult(cfg.method, cfg.dataset, cfg.seed, "failed", run_dir, tracker.run_id,
                       selected_by=cfg.train.select_metric)
    try:
        tracker.log_artifact(config_path)
        seeding.configure_determinism(cfg.train.deterministic)
        precision.configure_tf32(cfg.train.tf32)
        seeding.seed_everything(cfg.seed)
        method = methods.registry.get(cfg.method)(cfg.method_cfg, device=device)
        described = method.describe()
        if described:
            tracker.set_tags({f"bench.uses.{k}": json.dumps(v) if not isinstance(v, str) else v
                              for k, v in described.items()})
            atomic_write_json(run_dir / "uses.json", described)
        evaluator = Evaluator(cfg, run_dir, device, data=eval_data, compute=compute)
        trainer = Trainer(cfg, method, train_ds, evaluator, tracker, run_dir, on_eval=on_eval,
                          origin_hashes=origin_hashes)
        schedule = _record_schedule(cfg, trainer, tracker, method)
        tracker.log_params({k: v for k, v in _resolved_params(cfg, trainer, evaluator).items()
                            if k.removeprefix("eval.") not in eval_changes})  # a changed one is in the tag
        _log_dataset(tracker, cfg, train_ds, evaluator)
        trainer.setup(resume=resume)
        threads.note_change(run_dir, continuity, trainer.state.iteration)
        trainer.run(progress)
        state = trainer.state

        # Final scores on the full test split: last weights, then best weights.
        metrics_doc: dict[str, Any] = {"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed,
                                       "preset": cfg.preset, "direction": cfg.data.direction or "default",
                                       "config_hash": cfg.config_hash(), "history": state.history,
                                       "schedule": {"iterations": schedule.iterations, "epochs": schedule.epochs,
                                                    "cut": schedule.cuts}}
        method.eval()
        last_epoch = state.epoch - 1 if state.batch_pos == 0 else state.epoch
        # Summary metrics (one number per run) sit at step 0: MLflow charts them as values, not curve points.
        if progress:
            progress.phase(f"final evaluation: last weights on {_resolved_params(cfg, trainer, evaluator)['eval.n_test']} "
                           "test images")
        last = evaluator.full(method, "last")
        metrics_doc["last"] = {"epoch": last_epoch, **last}
        tracker.log_metrics({**_flatten_results("last", last["metrics"]), "last/epoch": last_epoch}, step=0)
        if method.two_way:
            # Two-way methods are also scored B->A, with the last weights (the official protocol), before the
            # best weights are loaded.
            if progress:
                progress.phase("final evaluation: reverse direction (last weights)")
            rev_scores = Evaluator(cfg, run_dir, device, direction="BtoA", compute=compute).full(method, "last")
            metrics_doc["reverse"] = {"direction": "BtoA", "weights": "last", "epoch": last_epoch, **rev_scores}
            tracker.log_metrics(_flatten_results("reverse", rev_scores["metrics"]), step=0)
        best_epoch = int(state.best["epoch"]) if state.best else last_epoch
        recovered = None
        if cfg.eval.score_best and best_epoch != last_epoch:
            if progress:
                progress.phase(f"final evaluation: best weights (epoch {best_epoch})")
            try:
                load_best_into(method, run_dir, cfg, origin_hashes=origin_hashes)
            except CheckpointError as exc:
                # The best epoch's weights are gone; the last ones are loaded: score "best" with them, saying so.
                recovered = (f"{exc}. The best epoch by the training history was {best_epoch}; its weights are "
                             f"lost, so 'best' is scored with the last weights (epoch {last_epoch})")
                log.warning("%s", recovered)
                load_last_nets_into(method, run_dir)  # a best.pt that did not fit may have been loaded in part
                best_epoch, best = last_epoch, last
            else:
                best = evaluator.full(method, "best")
        else:
            best = last
        metrics_doc["best"] = {"epoch": best_epoch, "selected_by": cfg.train.select_metric,
                               "note": "selected on the test set (the official test scripts evaluate the last epoch)", **best}
        if recovered:
            metrics_doc["best"].update(recovered=recovered, history_best_epoch=int(state.best["epoch"]),
                                       selected_by="last (best.pt unusable)")
            tracker.set_tags({"bench.best_recovered": recovered[:5000]})
        tracker.log_metrics({**_flatten_results("best", best["metrics"]), "best/epoch": best_epoch}, step=0)
        fingerprints = {name: r["fingerprint"] for name, r in last["metrics"].items() if r.get("fingerprint")}
        for name, fingerprint in fingerprints.items():
            tracker.set_tags(protocol_tags(name, fingerprint))
        if fingerprints:
            tracker.log_dict(json.loads(json.dumps(fingerprints, default=str)), "protocol.json")
        for name, reason in _unavailable_reasons(last["metrics"], run_dir).items():  # tables say why a cell is empty
            tracker.set_tags({f"bench.unavailable.{name}": reason[:5000]})
        atomic_write_json(run_dir / "metrics.json", metrics_doc)
        tracker.log_artifact(run_dir / "metrics.json")
        for sub in ("inputs", "outputs", "targets"):  # targets: the ground truth, for aligned datasets
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
        (run_dir / "error.txt").unlink(missing_ok=True)  # an earlier attempt's error no longer applies
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
        # Ctrl-C, a pool's interrupt or a Slurm preemption (submitit exits the task) end KILLED, resumable.
        tracker.finish("KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED", error=msg)
        _write_error(run_dir / "error.txt", traceback.format_exc())
        raise
    finally:
        result.seconds = time.perf_counter() - t_start
    return result


def read_record(path: Path, json_doc: bool = True) -> Any:
    """A run record (config.json, metrics.json, mlflow_run_id.txt); CheckpointError naming it when unreadable."""
    try:
        text = path.read_text()
        return json.loads(text) if json_doc else text
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"run record {path} is unreadable ({type(exc).__name__}: {exc}); restore it from a "
                              "copy, or start over with --restart (the folder is moved aside, not deleted)") from None


def _write_error(path: Path, text: str) -> None:
    """Record a failure's traceback; best effort (a full disk must not hide the real error behind an empty file)."""
    try:
        atomic_write_text(path, text)
    except (OSError, BenchError) as exc:
        log.warning("could not write %s (%s); the error is in the log above", path, exc)


def _record_schedule(cfg: RunConfig, trainer, tracker, method):
    """Log what the run trains against its recipe; a cut schedule is warned about, a param and a tag."""
    from bench.schedule import TAG_SCHEDULE_CUT, plan

    schedule = plan(cfg, trainer)
    log.log(logging.WARNING if schedule.cuts else logging.INFO, "%s/%s seed %d trains %s", cfg.method, cfg.dataset,
            cfg.seed, schedule.describe())
    tracker.log_params(schedule.params())
    tags = {"bench.pipeline": method.data_pipeline().describe()}
    if method.RECIPE is not None:
        tags["bench.recipe"] = method.RECIPE.command(cfg.dataset)[:5000]
    if schedule.cuts:
        tags[TAG_SCHEDULE_CUT] = schedule.cut[:5000]
    tracker.set_tags(tags)
    return schedule


def _is_pruned(exc: BaseException) -> bool:
    try:
        import optuna
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, optuna.TrialPruned)

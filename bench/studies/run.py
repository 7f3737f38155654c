"""Running a study: create or join it, run trials in one or many worker processes, log them to MLflow.

Protocol (safe with any number of workers on the journal file or an RDB):
1. `open_study`: creating the study is the mutex: the one process that creates it enqueues the trials
   (the whole grid, or the spec's `enqueue` list), opens the study's MLflow parent run, then marks the study
   ready; every other process waits for that mark.
2. `work`: a worker fails trials whose worker died (and re-queues them), then pops a WAITING trial
   atomically (Optuna's queue: a trial moves WAITING -> RUNNING in exactly one process). Grid studies
   never create trials outside the queue, so no grid point is lost or run twice; tpe/random studies ask the
   sampler for a new trial while the budget lasts.
3. A trial runs its seeds through `bench.runner.run_one` (runs nested under the trial's MLflow run, which is
   nested under the study's), reports the eval-time metric every evaluation for the pruner, and returns the
   mean over seeds. A heartbeat thread marks it alive.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.errors import BenchError, ConfigError, UsageError
from bench.formatting import duration, human_params
from bench.metrics import catalog
from bench.progress import Reporter
from bench.studies.objectives import get_objective, is_objective
from bench.studies.spec import StudySpec
from bench.tracking import metric_key
from bench.studies.report import SEED_METRICS_ATTR
from bench.studies.storage import OWNER_ATTR, StudyStorage, default_storage, open_storage, owner_record

log = logging.getLogger(__name__)

SPEC_ATTR = "bench:spec"
READY_ATTR = "bench:ready"
PARENT_ATTR = "bench:mlflow_parent_run_id"
TRIAL_RUN_ATTR = "mlflow_run_id"
#: The error a failed trial ended with (its first line, for `status`, `table` and the study's own error).
ERROR_ATTR = "bench:error"
#: Trial number from which failures count toward the stop (set by each `bench study run` of an existing study).
STREAK_START_ATTR = "bench:failure_streak_from"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class RunOptions:
    """Where and how trials run (not part of the study's identity)."""

    out: str = "runs"
    tracking_uri: str | None = None
    device: str | None = None
    data_root: str | None = None
    inception_weights: str | None = None
    #: Where tables and figures go: <results_dir>/<study name>/.
    results_dir: str = "results/studies"
    #: Log the study and its trials to MLflow (off: Optuna storage only; training runs still track themselves).
    tracking: bool = True


# ------------------------------------------------------------------------------------------ study
def worker_seed(seed: int, worker: int | None) -> int:
    """The sampler seed of one worker: the spec's seed for worker 0, a seed derived from (seed, worker) for the
    others, and one derived from this process (host, pid) for a worker started without an index. Workers that
    shared one seed would draw the same random (startup) points."""
    import hashlib

    import numpy as np

    if worker == 0:
        return seed
    if worker is None:
        worker = int.from_bytes(hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).digest()[:4], "big")
    return int(np.random.SeedSequence([seed, worker]).generate_state(1)[0])


def make_sampler(spec: StudySpec, worker: int | None = 0):
    """The spec's sampler, seeded for `worker` (`worker_seed`). Grid studies run enqueued points only, so their
    sampler is never asked."""
    import optuna

    s = spec.sampler
    seed = worker_seed(s.seed, worker)
    if s.kind == "tpe":
        kwargs: dict[str, Any] = {"seed": seed, "multivariate": s.multivariate, "group": s.multivariate,
                                  "constant_liar": True}
        if s.n_startup_trials is not None:
            kwargs["n_startup_trials"] = s.n_startup_trials
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(**kwargs)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(spec: StudySpec):
    """The spec's pruner (Nop when none), wrapped in PatientPruner when `patience` is set."""
    import optuna

    p = spec.pruner
    if p.kind == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
                                             interval_steps=p.interval_steps)
    elif p.kind == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=p.max_resource,
                                                reduction_factor=p.reduction_factor)
    else:
        return optuna.pruners.NopPruner()
    if p.patience is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = optuna.pruners.PatientPruner(pruner, patience=p.patience)
    return pruner


def storage_url(spec: StudySpec) -> str:
    return spec.storage or default_storage(spec.name)


def open_handle(spec: StudySpec, *, create: bool = True) -> StudyStorage:
    return open_storage(storage_url(spec), heartbeat_interval=spec.heartbeat_interval,
                        grace_period=spec.grace_period, max_retry=spec.max_retry, create_dirs=create)


def load_existing(spec: StudySpec, handle: StudyStorage):
    """The study of `spec` in `handle` (UsageError telling how to create it when absent)."""
    import optuna

    try:
        study = optuna.load_study(study_name=spec.study_name, storage=handle.storage,
                                  sampler=make_sampler(spec), pruner=make_pruner(spec))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(handle.storage, include_best_trial=False)]
        raise UsageError(f"no study {spec.study_name!r} in {handle.display} (it has: {', '.join(names) or 'none'}); "
                         f"start it with `bench study run {spec.path or spec.name}` and the same "
                         "--preset/--dataset/--storage") from None
    check_spec(study, spec)
    return study


def spec_digest(spec: StudySpec) -> dict[str, str]:
    """The spec's identity as a small user attribute: 8 hex digits per top-level key (the full spec is the
    `spec.json` artifact of the study's MLflow run and of its results folder)."""
    import hashlib

    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:8]
            for k, v in sorted(spec.fingerprint().items())}


def check_spec(study, spec: StudySpec) -> None:
    """The stored spec must match: resuming a study under other settings would mix two experiments."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return
    # Studies created before the compact digest stored the whole fingerprint.
    current = spec_digest(spec) if all(isinstance(v, str) and len(v) == 8 for v in stored.values()) \
        else spec.fingerprint()
    if stored != current:
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise ConfigError(f"study {spec.study_name!r} in {storage_url(spec)} was created with other settings "
                          f"(differs in: {', '.join(diff)}); undo the change, or use another --storage, or rename "
                          f"the spec's `name`")


def open_study(spec: StudySpec, handle: StudyStorage, opts: RunOptions, *, coordinator: bool = False,
               worker: int | None = 0):
    """Create the study (and set it up) or join it once it is ready. Returns the Optuna study, whose sampler is
    seeded for `worker` (see `worker_seed`)."""
    import optuna

    directions = list(spec.objective.directions)
    created = False
    if coordinator:
        validate_points(spec, opts)  # before the study exists: a typo leaves nothing behind
    try:
        study = optuna.create_study(storage=handle.storage, study_name=spec.study_name, directions=directions,
                                    sampler=make_sampler(spec, worker), pruner=make_pruner(spec),
                                    load_if_exists=False)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.study_name, storage=handle.storage,
                                  sampler=make_sampler(spec, worker), pruner=make_pruner(spec))
    if created:
        log.info("created study %s in %s", spec.study_name, handle.display)
        _setup(study, spec, opts)
    else:
        _wait_ready(study, spec, opts)
        check_spec(study, spec)
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(f"study {spec.study_name!r} optimises {[d.name for d in study.directions]}, the spec "
                              f"says {directions}")
        if coordinator:
            requeue_failed_grid_points(study, spec)
            _reopen_parent(study, opts)
            # Run again (after a fix): earlier failures no longer stop the study at once.
            study.set_user_attr(STREAK_START_ATTR, len(study.get_trials(deepcopy=False)))
    return study


def objective_names(spec: StudySpec) -> list[str]:
    """What a trial's value is, for optuna-dashboard's axes: 'FID (last epoch, mean of 3 seeds)'."""
    from bench.metrics import catalog

    n = len(spec.seeds)
    select = "last epoch" if spec.objective.select == "last" else "best epoch"
    return [f"{catalog.get(m).label} ({select}, mean of {n} seed{'s' if n > 1 else ''})"
            for m in spec.objective.metrics]


def _setup(study, spec: StudySpec, opts: RunOptions) -> None:
    import optuna

    validate_points(spec, opts)
    study.set_user_attr(SPEC_ATTR, spec_digest(spec))
    study.set_user_attr("bench:spec_path", spec.path)
    study.set_user_attr("bench:paper", spec.paper)
    with warnings.catch_warnings():  # experimental in Optuna 4 (stable since 3.2 in practice)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective_names(spec))
    points = spec.grid_points() if spec.is_grid else [dict(p) for p in spec.enqueue]
    for params in points:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(PARENT_ATTR, _start_parent_run(spec, opts))
    study.set_user_attr(READY_ATTR, True)


def _wait_ready(study, spec: StudySpec, opts: RunOptions) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not study.user_attrs.get(READY_ATTR):
        if time.monotonic() > deadline:
            # The creator died during set-up: finish it here (enqueueing skips points already queued).
            log.warning("study %s was never marked ready; completing its set-up", spec.study_name)
            _setup(study, spec, opts)
            return
        time.sleep(0.5)


def requeue_failed_grid_points(study, spec: StudySpec) -> int:
    """Re-queue grid points whose only trials failed (e.g. after fixing a crash); returns how many."""
    from optuna.trial import TrialState

    if not spec.is_grid:
        return 0
    alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    covered, failed = set(), {}
    for t in study.get_trials(deepcopy=False):
        params = dict(t.system_attrs.get("fixed_params", {}))
        params.update(t.params)
        key = json.dumps(params, sort_keys=True, default=str)
        if t.state in alive:
            covered.add(key)
        else:
            failed[key] = params
    count = 0
    for key, params in failed.items():
        if key not in covered:
            study.enqueue_trial(params)
            count += 1
    if count:
        log.info("re-queued %d failed grid point(s) of %s", count, spec.study_name)
    return count


def probe_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Parameter sets that together use every value a trial can get: the grid, or for tpe/random the enqueued
    points plus, per parameter, each choice / variant and both bounds (the others at their first value)."""
    if spec.is_grid:
        return spec.grid_points()
    base: dict[str, Any] = {}
    for p in spec.search_space:
        if p.active(base):
            base[p.name] = _probe_values(p)[0]
    points = [dict(e) for e in spec.enqueue] + [base]
    for p in spec.search_space:
        for value in _probe_values(p)[1:]:
            point = {**base, p.name: value}
            points.append({q.name: point[q.name] for q in spec.search_space if q.name in point and q.active(point)})
    return points


def _probe_values(p) -> list[Any]:
    if p.kind == "categorical":
        return list(p.choices)
    if p.kind == "variant":
        return list(p.variants)
    if p.kind == "int":
        return [int(p.low), int(p.high)]
    return [float(p.low), float(p.high)]


def validate_points(spec: StudySpec, opts: RunOptions) -> None:
    """Resolve the fixed overrides and every value the search space can give (`probe_points`) into run configs
    now, against the method's config, so a typo fails before the first trial."""
    if is_objective(spec.method):
        return
    from bench.runner import build_run_config, method_fits

    for params in probe_points(spec):
        method, dataset, overrides = spec.resolve(params)
        if is_objective(method):
            get_objective(method)
            continue
        try:
            build_run_config(method, dataset, spec.seeds[0], spec.preset, overrides, data_root=opts.data_root,
                             out=opts.out, device=opts.device)
            reason = method_fits(method, dataset)
            if reason:
                raise ConfigError(reason)
        except BenchError as exc:
            raise ConfigError(f"{spec.path}: trial {params or '(fixed overrides)'} -> {method} on {dataset}: {exc}; "
                              "fix the spec's search_space/overrides") from None


# ------------------------------------------------------------------------------------------ MLflow
def _start_parent_run(spec: StudySpec, opts: RunOptions) -> str | None:
    from bench.tracking import Tracker

    if not opts.tracking:
        return None

    tags = {"bench.study": spec.study_name, "bench.preset": spec.preset,
            "bench.dataset": "+".join(spec.datasets), "bench.spec_path": spec.path}
    params = {"study.sampler": spec.sampler.kind, "study.sampler_seed": spec.sampler.seed,
              "study.pruner": spec.pruner.kind, "study.seeds": ",".join(map(str, spec.seeds)),
              "study.objective": ",".join(f"{m}:{d}" for m, d in zip(spec.objective.metrics, spec.objective.directions)),
              "study.select": spec.objective.select, "study.method": spec.method, "study.preset": spec.preset,
              "study.fixed_overrides": json.dumps(spec.fixed_overrides(), sort_keys=True, default=str),
              "study.search_space": ", ".join(p.name for p in spec.search_space)}
    tracker = Tracker.start(tracking_uri=opts.tracking_uri, experiment=spec.datasets[0],
                            run_name=f"study/{spec.study_name}", tags=tags, params=params, kind="study")
    # The whole spec (search space included) as a file, instead of kB-sized params and attributes.
    tracker.log_dict({"fingerprint": spec.fingerprint(), "path": spec.path, "paper": spec.paper,
                      "search_space": [dataclasses.asdict(p) for p in spec.search_space]}, "spec.json")
    return tracker.run_id


def _client(opts: RunOptions):
    from bench.tracking import make_client

    return make_client(opts.tracking_uri)


def _reopen_parent(study, opts: RunOptions) -> None:
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id and opts.tracking:
        client = _client(opts)
        if client.get_run(run_id).info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "bench.status", "running")


def close_stale_trial_run(opts: RunOptions) -> Callable[[Any, Any], None]:
    """A hook for stale trials: end their MLflow trial run (and its seed runs) as FAILED."""

    def hook(study, trial) -> None:
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR)
        if not run_id or not opts.tracking:
            return
        client = _client(opts)
        children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
        for run in [*children, client.get_run(run_id)]:
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, "bench.status", "failed")
                client.set_tag(run.info.run_id, "bench.error", "worker died (heartbeat stale); trial re-queued")
                client.set_terminated(run.info.run_id, status="FAILED")

    return hook


# ------------------------------------------------------------------------------------------ one trial
def run_trial(trial, spec: StudySpec, opts: RunOptions, parent_run_id: str | None) -> list[float]:
    """Run every seed of one trial and return the objective value(s): the mean over seeds."""
    import optuna
    from bench.tracking import Tracker

    params = spec.suggest(trial)
    method, dataset, overrides = spec.resolve(params)
    system_attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    # A retried trial reuses the original trial's run folders, so its runs resume from their checkpoints.
    origin = system_attrs.get("failed_trial", trial.number)
    trial.set_user_attr("bench:method", method)
    trial.set_user_attr("bench:dataset", dataset)
    if origin != trial.number:
        trial.set_user_attr("bench:retry_of", origin)
    tags = {"bench.study": spec.study_name, "bench.trial": trial.number,
            "bench.method": method, "bench.dataset": dataset, "bench.preset": spec.preset,
            "bench.swept": json.dumps(params, sort_keys=True, default=str)}
    log.info("study %s: trial %d starts (%s on %s, %s; %d seed%s): %s", spec.study_name, trial.number, method, dataset,
             spec.preset, len(spec.seeds), "s" if len(spec.seeds) > 1 else "", human_params(params) or "defaults")
    t_trial = time.monotonic()
    if opts.tracking:
        tracker = Tracker.start(tracking_uri=opts.tracking_uri, experiment=dataset,
                                run_name=f"{spec.name}/trial{trial.number}", tags=tags,
                                params={**{f"param.{k}": v for k, v in params.items()}, "method": method,
                                        "seeds": ",".join(map(str, spec.seeds))},
                                parent_run_id=parent_run_id, kind="trial")
        trial.set_user_attr(TRIAL_RUN_ATTR, tracker.run_id)
    else:
        tracker = Tracker.disabled()
    seed_metrics: dict[str, Any] = dict(trial.user_attrs.get(SEED_METRICS_ATTR) or {}) if origin != trial.number else {}
    report = not spec.multi_objective
    metric = spec.objective.metric
    try:
        for index, seed in enumerate(spec.seeds):
            if str(seed) in seed_metrics:
                continue  # finished before the retry
            offset = index * _steps_per_seed(spec, method, overrides, dataset)

            def on_eval(epoch: int, scores: Mapping[str, float], _offset=offset, _seed=seed) -> None:
                value = scores.get(metric)
                log.info("study %s: trial %d seed %d epoch %d: %s", spec.study_name, trial.number, _seed, epoch,
                         " ".join(f"{k}={catalog.get(k).format(v)}" for k, v in scores.items()) or "no score")
                if value is None or not report:
                    return
                step = _offset + epoch
                trial.report(float(value), step)
                if tracker.enabled:
                    tracker.log_metrics({metric_key(metric, "intermediate"): float(value)}, step=step)
                if trial.should_prune():
                    log.info("study %s: trial %d pruned at seed %d epoch %d (%s=%s, worse than the pruner's "
                             "threshold)", spec.study_name, trial.number, _seed, epoch, metric,
                             catalog.get(metric).format(value))
                    raise optuna.TrialPruned(f"{metric}={value:.4g} at seed {_seed} epoch {epoch} (step {step})")

            log.info("study %s: trial %d seed %d (%d of %d) training", spec.study_name, trial.number, seed,
                     index + 1, len(spec.seeds))
            result = run_seed(spec, opts, method, dataset, seed, overrides, params, trial.number, origin,
                              tracker.run_id, on_eval)
            seed_metrics[str(seed)] = result
            trial.set_user_attr(SEED_METRICS_ATTR, seed_metrics)
            scores = result.get(spec.objective.select) or {}
            log.info("study %s: trial %d seed %d done: %s", spec.study_name, trial.number, seed,
                     " ".join(f"{spec.objective.select}/{k}={catalog.get(k).format(v)}" for k, v in scores.items()
                              if k != "epoch" and isinstance(v, (int, float))) or "no scores")
        values = objective_values(spec, seed_metrics)
        finals: dict[str, float] = {}
        for m in sorted({k for r in seed_metrics.values() for k in (r.get(spec.objective.select) or {})} - {"epoch"}):
            vals = [r[spec.objective.select][m] for r in seed_metrics.values()
                    if isinstance((r.get(spec.objective.select) or {}).get(m), (int, float))]
            if vals:
                key = metric_key(m, "objective")
                finals[key] = sum(vals) / len(vals)
                if len(vals) > 1:
                    mean = finals[key]
                    finals[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        if tracker.enabled:
            tracker.log_metrics(finals)
        tracker.set_tags({"bench.value": json.dumps(values)})
        tracker.finish("FINISHED")
        log.info("study %s: trial %d finished in %s: %s", spec.study_name, trial.number,
                 duration(time.monotonic() - t_trial), ", ".join(
                     f"{name} = {v:.4g}" for name, v in zip(objective_names(spec), values)))
        return values
    except optuna.TrialPruned as exc:
        tracker.finish("KILLED", error=f"pruned: {exc}", bench_status="pruned")
        raise
    except KeyboardInterrupt:
        tracker.finish("KILLED", error="interrupted")
        raise
    except BaseException as exc:
        tracker.finish("FAILED", error=f"{type(exc).__name__}: {exc}")
        raise


def _steps_per_seed(spec: StudySpec, method: str, overrides: Mapping[str, Any], dataset: str | None = None) -> int:
    """Epochs of one seed's run: seeds report on consecutive step ranges, so the pruner compares like with like."""
    if is_objective(method):
        return get_objective(method).steps(overrides)
    import methods
    from bench.config import split_overrides

    cls = methods.get(method)
    # the preset's recipe depends on the dataset (e.g. BicycleGAN trains facades 200+200 epochs)
    return cls.make_config(spec.preset, split_overrides(overrides, cls.Config)[0], dataset=dataset).total_epochs


def objective_values(spec: StudySpec, seed_metrics: Mapping[str, Any]) -> list[float]:
    """Mean over seeds of each objective metric (BenchError naming the metric when a seed lacks it)."""
    values = []
    for m in spec.objective.metrics:
        vals = []
        for seed, result in seed_metrics.items():
            v = (result.get(spec.objective.select) or {}).get(m)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise BenchError(f"metric {m!r} ({spec.objective.select}) is unavailable for seed {seed}: the run "
                                 "scored " + ", ".join(sorted(k for k in (result.get(spec.objective.select) or {})
                                                              if k != "epoch")) +
                                 "; check the objective metric and that its weights are set (e.g. "
                                 "--inception-weights / $BENCH_INCEPTION_WEIGHTS for fid)")
            vals.append(float(v))
        values.append(sum(vals) / len(vals))
    return values


def run_seed(spec: StudySpec, opts: RunOptions, method: str, dataset: str, seed: int, overrides: Mapping[str, Any],
             params: Mapping[str, Any], number: int, origin: int, trial_run_id: str | None,
             on_eval: Callable[[int, Mapping[str, float]], None]) -> dict[str, Any]:
    """Train and score one seed of a trial; returns {"last": {...}, "best": {...}, "run_dir": ...}."""
    if is_objective(method):
        return get_objective(method).run(seed, overrides, number, on_eval)
    from bench.runner import build_run_config, run_one

    cfg = build_run_config(method, dataset, seed, spec.preset, overrides, data_root=opts.data_root, out=opts.out,
                           device=opts.device, tracking_uri=opts.tracking_uri, study=spec.study_name, trial=number,
                           run_name_suffix=f"{spec.name}.{spec.preset}.trial{origin}",
                           inception_weights=opts.inception_weights)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False))
    resume = (cfg.run_dir / "config.json").is_file()
    if resume:
        log.info("trial %d seed %d: resuming %s", number, seed, cfg.run_dir)
    # Plain progress lines (never a bar: several workers share one terminal or log file).
    with Reporter(tty=False) as reporter:
        res = run_one(cfg, resume=resume, parent_run_id=trial_run_id, on_eval=on_eval, swept=dict(params),
                      progress=reporter.run(f"{spec.study_name} trial {number} seed {seed}"), kind="trial")
    if res.status != "finished":
        raise BenchError(f"trial {number} seed {seed}: run {res.run_dir} {res.status}: {res.error}")
    return {**res.metrics, "run_dir": str(res.run_dir), "mlflow_run_id": res.mlflow_run_id}


# ------------------------------------------------------------------------------------------ workers
class _Heartbeat:
    """Beats for one trial from a daemon thread until stopped."""

    def __init__(self, handle: StudyStorage, trial_id: int) -> None:
        self.handle, self.trial_id = handle, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{trial_id}")

    def _loop(self) -> None:
        while True:
            try:
                self.handle.beat(self.trial_id)
            except Exception as exc:  # a missed beat must not kill the trial
                log.warning("heartbeat of trial id %d failed: %s", self.trial_id, exc)
            if self.stop.wait(self.handle.heartbeat_interval):
                return

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.handle.forget(self.trial_id)


def budget_left(study, spec: StudySpec) -> int:
    """Trials still to start: the budget minus trials finished (complete, pruned or failed) or running.

    A failed trial counts unless it was run again: re-queued after its worker died (a retry names it in
    `failed_trial`) or, in a grid study, re-queued with the same parameters. So a study whose trials keep failing
    ends with its budget instead of asking for new trials forever.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    later_points = {}
    for t in trials:
        later_points.setdefault(_point_key(t), []).append(t.number)
    used = 0
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            used += 1
        elif t.state == TrialState.FAIL and t.number not in retried and \
                not (spec.is_grid and max(later_points[_point_key(t)]) > t.number):
            used += 1
    return spec.total_trials() - used


def _point_key(trial) -> str:
    params = dict(trial.system_attrs.get("fixed_params", {}))
    params.update(trial.params)
    return json.dumps(params, sort_keys=True, default=str)


class StudyFailed(BenchError):
    """Every trial failed, or `max_failed_trials` failed in a row: the study stops with the first error."""


def failure_streak(study) -> list:
    """The failed trials at the end of the study's finished trials (in the order they ended), worker deaths
    (re-queued trials) excluded; only trials since the last `bench study run` count (a rerun after a fix starts
    a new streak)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    since = int(study.user_attrs.get(STREAK_START_ATTR, 0))
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and t.number not in retried and t.number >= since]
    done.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
    streak = []
    for t in reversed(done):
        if t.state != TrialState.FAIL:
            break
        streak.append(t)
    return streak[::-1]


def first_error(trials) -> str:
    """'trial N: <error>' of the first trial in `trials` that recorded one."""
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs.get(ERROR_ATTR):
            return f"trial {t.number}: {t.user_attrs[ERROR_ATTR]}"
    return "no error was recorded (the worker may have been killed)"


def check_failures(study, spec: StudySpec) -> None:
    """StudyFailed when the last `max_failed_trials` finished trials all failed."""
    streak = failure_streak(study)
    if len(streak) >= spec.max_failed_trials:
        raise StudyFailed(f"study {spec.study_name} stopped after {len(streak)} consecutive failed trials "
                          f"(max_failed_trials: {spec.max_failed_trials} in the spec); first error, "
                          f"{first_error(streak)}; fix it and run the same command again (raise --n-trials if the "
                          "budget is spent)")


def check_all_failed(study, spec: StudySpec) -> None:
    """StudyFailed when the study has trials and every finished one failed."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed and not any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        raise StudyFailed(f"study {spec.study_name}: every trial failed ({len(failed)}); first error, "
                          f"{first_error(failed)}; fix it and run the same command again (raise --n-trials if the "
                          "budget is spent)")


def _pop_waiting(study) -> int | None:
    """Move one WAITING trial to RUNNING (exactly one process succeeds per trial); retries of trials whose
    worker died come first, since they continue from checkpoints. Returns its id, or None."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    waiting.sort(key=lambda t: ("failed_trial" not in t.system_attrs, t.number))
    for t in waiting:
        # The same compare-and-set Study.ask uses for its queue (SELECT ... FOR UPDATE on an RDB, the
        # journal's ordered log otherwise): it returns False when another worker took the trial first.
        try:
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except UpdateFinishedTrialError:
            continue
    return None


def _next_trial(study, spec: StudySpec):
    """Pop a queued trial (atomic across processes), else a new one from the sampler (not for grids)."""
    import optuna

    trial_id = _pop_waiting(study)
    if trial_id is not None:
        return optuna.Trial(study, trial_id)
    if spec.is_grid:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


def work(spec: StudySpec, opts: RunOptions, handle: StudyStorage | None = None, study=None,
         max_trials: int | None = None, worker: int | None = 0) -> dict[str, int]:
    """A worker: run trials of the study until its budget or queue is exhausted. Returns state counts.

    Raises StudyFailed when `max_failed_trials` trials in a row failed (in any worker)."""
    import optuna
    from optuna.trial import TrialState

    handle = handle or open_handle(spec)
    handle.on_stale.hook = close_stale_trial_run(opts)
    study = study or open_study(spec, handle, opts, worker=worker)
    parent_run_id = study.user_attrs.get(PARENT_ATTR)
    counts = {"complete": 0, "pruned": 0, "fail": 0}
    while max_trials is None or sum(counts.values()) < max_trials:
        handle.fail_stale(study)
        check_failures(study, spec)
        with handle.ask_lock():  # budget check and trial creation as one step for this machine's workers
            if budget_left(study, spec) <= 0:
                break
            trial = _next_trial(study, spec)
        if trial is None:
            break
        trial.set_user_attr(OWNER_ATTR, owner_record(trial.number))
        state, values, error = TrialState.FAIL, None, None
        with _Heartbeat(handle, trial._trial_id):
            try:
                values = run_trial(trial, spec, opts, parent_run_id)
                state = TrialState.COMPLETE
            except optuna.TrialPruned as exc:
                state = TrialState.PRUNED
                log.info("trial %d pruned: %s", trial.number, exc)
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                raise
            except BenchError as exc:
                error = str(exc)
                log.error("trial %d failed: %s", trial.number, exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                # One line; the traceback with -v (a real run also keeps it in its folder's error.txt).
                log.error("trial %d crashed: %s (traceback: bench -v ...)", trial.number, error)
                log.debug("trial %d traceback", trial.number, exc_info=True)
        if error is not None:
            try:
                trial.set_user_attr(ERROR_ATTR, error[:2000])
            except Exception as exc:  # the trial may have been failed as stale meanwhile
                log.debug("could not record the error of trial %d: %s", trial.number, exc)
        frozen = study.tell(trial, values if state == TrialState.COMPLETE else None,
                            state=None if state == TrialState.COMPLETE else state, skip_if_finished=True)
        if frozen.state != state:
            # Another worker judged this trial dead (heartbeats blocked for longer than the grace period) and
            # re-queued it; the retry runs it again and this result is dropped.
            log.warning("trial %d was marked %s by another worker meanwhile; its result is dropped",
                        trial.number, frozen.state.name)
        counts[frozen.state.name.lower() if frozen.state.name.lower() in counts else "fail"] += 1
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                 TrialState.FAIL)))
        log.info("study %s: %d of %d trials done (this worker: %d complete, %d pruned, %d failed)",
                 spec.study_name, finished, spec.total_trials(), counts["complete"], counts["pruned"], counts["fail"])
    check_failures(study, spec)
    return counts


def worker_entry(spec: StudySpec, opts: RunOptions, index: int | None = 0) -> dict[str, int]:
    """Entry point of a worker launched elsewhere (subprocess, submitit job): open, then work. `index` seeds its
    sampler (None: a seed derived from this process)."""
    log.info("worker %s (pid %d) joining %s", "?" if index is None else index, os.getpid(), spec.study_name)
    return work(spec, opts, worker=index)


def run_workers(argv: list[str], n: int) -> int:
    """Launch `n` worker subprocesses (`python -m bench.cli study worker ...`) and wait; returns the worst code."""
    from bench.launch.procs import cpu_share, die_with_parent, worker_env

    procs = []
    share = cpu_share(n)  # each worker gets its share of the cores (bench.launch.procs.worker_env)
    for i in range(n):
        env = worker_env(share, BENCH_STUDY_WORKER=str(i))
        cmd = [sys.executable, "-m", "bench.cli", "study", *argv]
        procs.append(subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent if os.name == "posix" else None))
    log.info("started %d workers: %s", n, " ".join(str(p.pid) for p in procs))
    codes = []
    try:
        for p in procs:
            codes.append(p.wait())
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    bad = [c for c in codes if c != 0]
    if bad:
        log.error("%d of %d workers exited with errors (codes %s)", len(bad), n, codes)
    return max(codes, key=abs) if bad else 0


def submit(spec: StudySpec, opts: RunOptions, *, n_workers: int, folder: str, cluster: str | None = None,
           parameters: Mapping[str, Any] | None = None, wait: bool = False) -> list[Any]:
    """Launch `n_workers` workers as a submitit job array (Slurm, or local for tests). Returns the jobs."""
    try:
        import submitit
    except ImportError as exc:
        raise UsageError("bench study submit needs submitit: pip install 'i2i-bench[slurm]'") from exc
    handle = open_handle(spec)
    if handle.kind == "journal":
        log.warning("journal storage %s: every node must see the same file (shared filesystem); for many "
                    "nodes prefer --storage postgresql://...", handle.display)
    open_study(spec, handle, opts, coordinator=True)  # create once before fanning out
    if handle.kind == "journal":
        # Jobs may start in another working directory: give them absolute paths.
        spec = dataclasses.replace(spec, storage=str(Path(handle.url).resolve()))
        opts = dataclasses.replace(opts, out=str(Path(opts.out).resolve()),
                                   results_dir=str(Path(opts.results_dir).resolve()))
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(name=f"bench-{spec.name}", **dict(parameters or {}))
    jobs = executor.map_array(worker_entry, [spec] * n_workers, [opts] * n_workers, list(range(n_workers)))
    log.info("submitted %d workers: %s", n_workers, ", ".join(j.job_id for j in jobs))
    if wait:
        for j in jobs:
            j.result()
    return jobs


# ------------------------------------------------------------------------------------------ finishing
def study_state(study, spec: StudySpec) -> dict[str, Any]:
    """Counts by state, budget, completeness and the best trial(s)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = budget_left(study, spec) <= 0 and not counts["running"]  # failed trials use the budget too
    if spec.is_grid:
        complete = not counts["waiting"] and not counts["running"] and counts["complete"] + counts["pruned"] > 0
    best = []
    if counts["complete"]:
        best = [{"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
    return {"counts": counts, "budget": spec.total_trials(), "complete": complete, "best": best}


def best_trial_key(spec: StudySpec) -> str:
    """The parent run's metric of the best trial: 'best_trial/mean_last_fid' (mean over seeds of last/fid)."""
    return f"best_trial/mean_{spec.objective.select}_{metric_key(spec.objective.metric)}"


def finalize(study, spec: StudySpec, opts: RunOptions) -> Path:
    """Write the table and figures to <results_dir>/<study>/ and attach them and the best params to the parent run."""
    from bench.studies.report import save_plots, study_table
    from bench.tables import render

    out_dir = Path(opts.results_dir) / spec.study_name
    out_dir.mkdir(parents=True, exist_ok=True)
    table = study_table(study, spec)
    if len(table.cells):
        for fmt, ext in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
            (out_dir / f"table.{ext}").write_text(render(table, fmt))
    plots = save_plots(study, spec, out_dir)
    state = study_state(study, spec)
    (out_dir / "summary.json").write_text(json.dumps(state, indent=2, default=str))
    (out_dir / "spec.json").write_text(json.dumps({"fingerprint": spec.fingerprint(), "path": spec.path},
                                                  indent=2, default=str))
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id and opts.tracking:
        client = _client(opts)
        for path in sorted(out_dir.iterdir()):
            if path.is_file():
                client.log_artifact(run_id, str(path), "study")
        tags = {"bench.status": "complete" if state["complete"] else "incomplete",
                "bench.trials": json.dumps(state["counts"])}
        if state["best"] and not spec.multi_objective:
            best = state["best"][0]
            tags.update({f"best.{k}": str(v) for k, v in best["params"].items()})
            tags["best.trial"] = str(best["number"])
            # Named for what it is: the best trial's objective, the mean over seeds of last/ (or best/) scores.
            client.log_metric(run_id, best_trial_key(spec), float(best["values"][0]), step=0)
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
        # Ended either way (bench.status says whether the study is complete); `run` reopens it to continue.
        client.set_terminated(run_id, status="FINISHED")
    log.info("study %s: table and plots in %s (%s)", spec.study_name, out_dir,
             ", ".join(f"{k}: {'ok' if isinstance(v, Path) else v}" for k, v in plots.items()))
    return out_dir

"""`bench study run | worker | status | table | plot | submit`: Optuna studies from `studies/*.yaml`.

    bench study run studies/qsattn_queries.yaml --dataset toy --preset smoke --workers 2
    bench study worker studies/qsattn_queries.yaml --dataset toy --preset smoke      # join from elsewhere
    bench study table studies/qsattn_queries.yaml --dataset toy --preset smoke --format latex

Workers started by `--workers N` run `python -m bench.cli study worker ...`.
"""

from __future__ import annotations

import argparse
import json
import logging

from bench.cli.lists import list_flag
from bench.errors import UsageError

log = logging.getLogger("bench.study")

# Options that define which study a command addresses; workers get them verbatim.
_SPEC_OPTIONS = (("--preset", "preset"), ("--dataset", "dataset"), ("--storage", "storage"),
                 ("--n-trials", "n_trials"))
_RUN_OPTIONS = (("--out", "out"), ("--tracking-uri", "tracking_uri"), ("--device", "device"),
                ("--data-root", "data_root"), ("--inception-weights", "inception_weights"),
                ("--results-dir", "results_dir"))


def _add_spec_args(p: argparse.ArgumentParser, run: bool = True) -> None:
    p.add_argument("spec", help="study spec: a YAML path or the name of a file in studies/")
    p.add_argument("--preset", help="run preset (default: the spec's, usually paper); smoke for a CPU-sized run")
    p.add_argument("--dataset", help="replace the spec's dataset (e.g. toy)")
    p.add_argument("--storage", help="Optuna storage: journal file path or RDB URL (default: the spec's, else "
                                     "results/studies/<name>.journal)")
    p.add_argument("--n-trials", type=int, help="the study's total trial budget (default: the spec's / grid size)")
    p.add_argument("--seeds", **list_flag(int, metavar="N"), help="replace the spec's seeds (0 1 or 0,1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra fixed override for every trial (part of the study's identity); repeatable")
    p.add_argument("--results-dir", default="results/studies", help="tables and figures go to <dir>/<study>/")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-tracking", dest="tracking", action="store_false",
                   help="no MLflow runs for the study and its trials (Optuna storage only; training runs of real "
                        "methods still log their own)")
    if run:
        p.add_argument("--out", "--output", dest="out", default="runs",
                       help="root of the trials' run folders (default: runs)")
        p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps")
        p.add_argument("--data-root", default=None, help="dataset folder in its official layout")
        p.add_argument("--inception-weights", default=None, help="FID Inception weights file")


def register(sub) -> None:
    """Add `bench study ...` to the main CLI."""
    p = sub.add_parser("study", help="Optuna studies: ablations and sweeps from studies/*.yaml",
                       description=__doc__.split("\n\n")[0])
    add_subcommands(p)


def add_subcommands(p: argparse.ArgumentParser) -> None:
    ss = p.add_subparsers(dest="study_command", required=True)
    r = ss.add_parser("run", help="create or resume the study and run its trials")
    _add_spec_args(r)
    r.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1: in-process)")
    r.set_defaults(func=cmd_run)
    w = ss.add_parser("worker", help="join the study from another process or node and run trials")
    _add_spec_args(w)
    w.set_defaults(func=cmd_worker)
    s = ss.add_parser("status", help="trial counts, best trial, running trials")
    _add_spec_args(s, run=False)
    s.set_defaults(func=cmd_status)
    t = ss.add_parser("table", help="the ablation table (mean ± std over seeds)")
    _add_spec_args(t, run=False)
    t.add_argument("--format", choices=("md", "latex", "csv"), default="md", help="output format (default: md)")
    t.add_argument("--out", "--output", dest="output", help="write to this file instead of stdout")
    t.set_defaults(func=cmd_table)
    pl = ss.add_parser("plot", help="metric vs parameter (error bars), history, importances")
    _add_spec_args(pl, run=False)
    pl.set_defaults(func=cmd_plot)
    sb = ss.add_parser("submit", help="launch workers as a job array through submitit (Slurm)")
    _add_spec_args(sb)
    sb.add_argument("--workers", type=int, default=4, help="array size: number of worker jobs")
    sb.add_argument("--slurm", action="store_const", const="slurm", dest="cluster", help="submit to Slurm")
    sb.add_argument("--cluster", choices=("slurm", "local", "debug"), help="submitit executor (default: auto)")
    sb.add_argument("--folder", default="results/studies/submitit/%j", help="submitit log folder (shared FS)")
    sb.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    sb.add_argument("--time", type=int, default=24 * 60, help="minutes per worker job")
    sb.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per Slurm job")
    sb.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per Slurm job")
    sb.add_argument("--mem-gb", type=float, default=None, help="memory per Slurm job, in GB")
    sb.add_argument("--wait", action="store_true", help="wait for the jobs and write the table and plots")
    sb.set_defaults(func=cmd_submit)


def _route_library_logs() -> None:
    """Optuna logs to stderr through its own handler ('[I ...] A new study created'): send it through bench's
    log instead (stdout), at WARNING unless -v, so stderr carries only bench's one-line error."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(args):
    from bench.config import parse_set
    from bench.studies.spec import find_spec, load_spec

    _route_library_logs()

    if args.n_trials is not None and args.n_trials < 1:
        raise UsageError(f"--n-trials {args.n_trials}: the study's trial budget must be 1 or more")
    spec = load_spec(find_spec(args.spec))
    return spec.with_options(preset=args.preset, dataset=args.dataset, overrides=parse_set(args.overrides),
                             seeds=tuple(args.seeds) if args.seeds else None, n_trials=args.n_trials,
                             storage=args.storage)


def _opts(args):
    from bench.studies.run import RunOptions

    return RunOptions(out=getattr(args, "out", "runs"), tracking_uri=args.tracking_uri,
                      device=getattr(args, "device", None), data_root=getattr(args, "data_root", None),
                      inception_weights=getattr(args, "inception_weights", None), results_dir=args.results_dir,
                      tracking=args.tracking)


def worker_argv(args) -> list[str]:
    """The `worker` command line that joins the same study with the same options."""
    argv = ["worker", args.spec]
    for flag, dest in _SPEC_OPTIONS + _RUN_OPTIONS:
        value = getattr(args, dest, None)
        if value is not None:
            argv += [flag, str(value)]
    if args.seeds:
        argv += ["--seeds", *map(str, args.seeds)]
    for item in args.overrides:
        argv += ["--set", item]
    if not args.tracking:
        argv.append("--no-tracking")
    return argv


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def cmd_run(args) -> int:
    from bench.studies.run import (StudyFailed, check_all_failed, check_failures, finalize, open_handle, open_study,
                                   run_workers, study_state, work)

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: use 1 or more")
    spec, opts = _spec(args), _opts(args)
    handle = open_handle(spec)
    study = open_study(spec, handle, opts, coordinator=True)
    log.info("study %s in %s (%d trial budget); dashboard: %s", spec.study_name, handle.display,
             spec.total_trials(), handle.dashboard_command())
    code, failure = 0, None
    try:
        if args.workers == 1:
            work(spec, opts, handle, study)
        else:
            code = run_workers(worker_argv(args), args.workers)
            check_failures(study, spec)
        check_all_failed(study, spec)
    except StudyFailed as exc:
        failure = exc
    _use_agg()
    out_dir = finalize(study, spec, opts)
    state = study_state(study, spec)
    print(json.dumps({"study": spec.study_name, "trials": state["counts"], "done": state["complete"],
                      "results": str(out_dir)}, default=str))
    if failure is not None:
        raise failure
    return code


def cmd_worker(args) -> int:
    from bench.studies.run import StudyFailed, worker_entry

    import os

    index = os.environ.get("BENCH_STUDY_WORKER")
    try:
        counts = worker_entry(_spec(args), _opts(args), index=int(index) if index is not None else None)
    except StudyFailed as exc:
        if index is None:
            raise
        log.error("worker %s stops: %s", index, exc)  # the launching `study run` reports it once, on stderr
        return 1
    log.info("worker done: %s", counts)
    return 0


def cmd_status(args) -> int:
    from bench.studies.run import first_error, load_existing, open_handle, study_state
    from bench.studies.storage import OWNER_ATTR, owner_is_dead
    from optuna.trial import TrialState

    spec = _spec(args)
    handle = open_handle(spec, create=False)
    study = load_existing(spec, handle)
    state = study_state(study, spec)
    c = state["counts"]
    print(f"study {spec.study_name}  storage {handle.display}")
    print(f"  budget {state['budget']}  complete {c['complete']}  pruned {c['pruned']}  running {c['running']}  "
          f"waiting {c['waiting']}  failed {c['fail']}  {'(done)' if state['complete'] else ''}")
    for b in state["best"]:
        print(f"  best trial {b['number']}: {b['values']}  {b['params']}")
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if failed:
        print(f"  first error: {first_error(failed)}")
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR) or {}
        age = handle.heartbeat_age(t)
        gone = owner_is_dead(owner, t.number) or (age is not None and age > spec.grace_period)
        print(f"  running trial {t.number}: {t.params}  on {owner.get('host', '?')} pid {owner.get('pid', '?')}"
              + (f"  heartbeat {age:.0f}s ago" if age is not None else "")
              + ("  (worker gone: retried by the next worker)" if gone else ""))
    print(f"  dashboard: {handle.dashboard_command()}")
    return 0


def cmd_table(args) -> int:
    from pathlib import Path

    from bench.studies.report import study_table
    from bench.studies.run import load_existing, open_handle
    from bench.tables import render

    spec = _spec(args)
    study = load_existing(spec, open_handle(spec, create=False))
    _check_some_finished(study, spec, args)
    table = study_table(study, spec)
    if not len(table.cells):
        raise UsageError(f"study {spec.study_name} has no trials yet; run `bench study run {args.spec}` first")
    text = render(table, args.format)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(args.output)
    else:
        print(text, end="")
    return 0


def _check_some_finished(study, spec, args) -> None:
    """A table of a study where no trial finished would be all dashes: say why instead."""
    from optuna.trial import TrialState

    from bench.errors import BenchError
    from bench.studies.run import first_error

    trials = study.get_trials(deepcopy=False)
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        raise BenchError(f"study {spec.study_name} has no finished trial: {len(failed)} failed (first error, "
                         f"{first_error(failed)}); fix it and run `bench study run {args.spec}` again")


def cmd_plot(args) -> int:
    from pathlib import Path

    from bench.studies.report import save_plots
    from bench.studies.run import load_existing, open_handle

    _use_agg()
    spec = _spec(args)
    study = load_existing(spec, open_handle(spec, create=False))
    done = save_plots(study, spec, Path(args.results_dir) / spec.study_name)
    for name, result in done.items():
        print(f"{name}: {result}" if isinstance(result, Path) else f"{name}: skipped ({result})")
    return 0


def cmd_submit(args) -> int:
    from bench.studies.run import finalize, load_existing, open_handle, submit

    spec, opts = _spec(args), _opts(args)
    params = {"timeout_min": args.time}
    cluster = args.cluster
    if cluster in (None, "slurm"):
        params.update({k: v for k, v in (("slurm_partition", args.partition), ("gpus_per_node", args.gpus_per_node),
                                         ("cpus_per_task", args.cpus_per_task), ("mem_gb", args.mem_gb))
                       if v is not None})
    jobs = submit(spec, opts, n_workers=args.workers, folder=args.folder, cluster=cluster, parameters=params,
                  wait=args.wait)
    for j in jobs:
        print(j.job_id)
    if args.wait:
        _use_agg()
        finalize(load_existing(spec, open_handle(spec)), spec, opts)
    return 0

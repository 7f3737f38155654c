"""`bench run`: train and evaluate methods on a dataset under fixed seeds, with a summary table at the end."""

from __future__ import annotations

import argparse
import logging

from bench.cli.lists import list_flag
from bench.errors import BenchError, UsageError

log = logging.getLogger("bench")


#: Measured on the 2-core development machine (README, "Speed and memory"): CUT at 256 px, batch 1, 2 threads.
#: Used only to say roughly how long a paper-sized run takes on a CPU; the run itself measures its own speed.
CPU_SECONDS_PER_ITERATION_256PX = 9.6

EPILOG = """examples:
  bench run --methods all --dataset toy --preset smoke            every method on the built-in data (CPU minutes)
  bench run --methods cut --dataset horse2zebra --data-root DIR --preset paper --seeds 0 1 2
  bench run --methods cut --dataset toy --preset smoke --resume   continue a killed run
  bench run --methods cut --dataset toy --preset smoke --restart  start over (the old folder is moved aside)
  bench run --methods all --dataset afhq --seeds 0 1 2 --preset paper --workers 8 --devices 0,1,2,3,4,5,6,7
  bench run --methods cut fastcut cyclegan --dataset toy --preset smoke --seeds 0 1 --workers 2 --devices cpu

A rerun of a finished run with the same settings keeps it (status "finished (kept)"); a run that stopped before
its first checkpoint simply starts again with the same command."""


def register(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate methods on a dataset under fixed seeds",
                       description="Train and evaluate each method on DATASET for each seed; track in MLflow.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", required=True, **list_flag(metavar="NAME"),
                   help="method names, or 'all' for every method that fits the dataset (see `bench methods`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `bench data list`)")
    p.add_argument("--seeds", **list_flag(int, default=[0], metavar="N"), help="seeds: 0 1 2 or 0,1,2 (default: 0)")
    p.add_argument("--preset", default=None,
                   help="paper (the official recipe for the dataset at 256 px, `bench methods --recipe METHOD`: "
                        "GPU-sized), code-defaults (the official code's defaults) or smoke (32 px, 2 epochs: CPU "
                        "minutes). Default: paper when a GPU is available; on a CPU-only machine give it explicitly")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: a method field (lambda_NCE=2), or data.*, train.*, eval.*; repeatable")
    p.add_argument("--data-root", help="dataset folder in its official layout (default: $BENCH_DATA_ROOT/<name> or the cache)")
    p.add_argument("--direction", help="translation direction (default: the dataset's paper direction)")
    p.add_argument("--out", "--output", dest="out", default="runs",
                   help="root of the run folders (default: runs)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue runs from their last checkpoint")
    again.add_argument("--restart", action="store_true",
                       help="start over: an existing run folder is moved aside to seed<N>.replaced-<time> (nothing "
                            "is deleted) and its MLflow run is tagged replaced")
    p.add_argument("--inception-weights", default=None, help="FID Inception weights file (or $BENCH_INCEPTION_WEIGHTS)")
    p.add_argument("--seg-weights", default=None, help="DRN-D-22 Cityscapes weights for segmentation scores")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--progress-interval", type=float, default=None, metavar="SECONDS",
                   help="when stdout is not a terminal: a progress line every SECONDS (default 30, "
                        "or $BENCH_PROGRESS_INTERVAL)")
    p.add_argument("--allow-thread-change", action="store_true",
                   help="with --resume: continue under another train.threads (recorded: not bitwise-continuous)")
    scale = p.add_argument_group("many runs at once (each (method, seed) in its own process)")
    scale.add_argument("--workers", type=int, default=0, metavar="N",
                       help="run N runs at once in a local process pool (default 0: one after the other here)")
    scale.add_argument("--devices", default=None, metavar="LIST",
                       help="pool devices: CUDA indices (0,1,2,3) or cpu (default: every visible GPU, else cpu)")
    scale.add_argument("--runs-per-device", type=int, default=None, metavar="K",
                       help="at most K runs per device (default: 1 per GPU; on cpu, --workers)")
    scale.add_argument("--launcher", choices=("local", "slurm"), default="local",
                       help="slurm: one job-array task per run through submitit (pip install 'i2i-bench[slurm]')")
    scale.add_argument("--status", action="store_true",
                       help="with --launcher slurm: show which runs are queued, running, finished, failed")
    scale.add_argument("--partition", default=None, help="Slurm partition")
    scale.add_argument("--gpus-per-run", type=int, default=1, metavar="G", help="Slurm GPUs per run (default 1)")
    scale.add_argument("--cpus-per-run", type=int, default=None, metavar="C", help="Slurm CPUs per run")
    scale.add_argument("--mem-gb", type=int, default=None, help="Slurm memory per run (GB)")
    scale.add_argument("--timeout-min", type=int, default=24 * 60, metavar="T",
                       help="Slurm time limit per task in minutes; a task that reaches it is requeued and "
                            "continues from last.pt (default 1440)")
    scale.add_argument("--array-parallelism", type=int, default=None, metavar="M",
                       help="at most M array tasks at once (default: all)")
    scale.add_argument("--slurm-folder", default=None,
                       help="submitit logs and job records (default: <out>/slurm); on a shared filesystem")
    scale.add_argument("--cluster", choices=("slurm", "local", "debug"), default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _uses_cpu(cfg) -> bool:
    return cfg.train.device == "cpu" or (cfg.train.device == "auto" and not has_accelerator())


def paper_cost(plan, sizes: dict, shown: int = 3) -> str:
    """What the plan's runs cost on a CPU: iterations per method at its image size, and rough hours."""
    from bench.train import schedule_length

    items, seen = [], set()
    for cfg in plan:
        if cfg.method in seen:
            continue
        seen.add(cfg.method)
        mc = cfg.method_cfg
        # Methods that count iterations (NICE-GAN, MUNIT) keep their budget in the config's `iterations`.
        sched = schedule_length(cfg, sizes[cfg.method], int(getattr(mc, "iterations", 0) or 0))
        hours = sched.iterations * CPU_SECONDS_PER_ITERATION_256PX * (mc.crop_size / 256) ** 2 / 3600
        items.append(f"{cfg.method} {sched.iterations:,} iterations at {mc.crop_size} px (~{hours:,.0f} h)")
    text = ", ".join(items[:shown]) + (f", and {len(items) - shown} more methods" if len(items) > shown else "")
    return (f"{text} per seed, at the ~{CPU_SECONDS_PER_ITERATION_256PX:g} s/iteration measured for CUT at 256 px "
            "on a 2-core CPU")


def check_preset_for_cpu(args, plan, sizes: dict) -> None:
    """No --preset on a CPU-only machine: refuse with the cost of `paper` and the CPU-sized command.
    An explicit `--preset paper` on a CPU: say what it costs, then run it."""
    if not plan or not any(_uses_cpu(cfg) for cfg in plan) or (args.preset or "paper") != "paper":
        return
    cost = paper_cost(plan, sizes)
    smoke = command_with(args, "--preset", "smoke")
    if args.preset is None:
        raise UsageError(f"no GPU here, and the default preset `paper` is the papers' full schedule: {cost}. "
                         f"A CPU-sized run (minutes): {smoke}. To train the paper schedule on this CPU anyway, "
                         "pass --preset paper")
    log.warning("--preset paper on a CPU: %s. A CPU-sized run (minutes): %s", cost, smoke)


#: Flags that exclude each other: adding one to a command drops the other.
_EXCLUSIVE = {"--restart": "--resume", "--resume": "--restart"}


def command_with(args, flag: str, value: str | None = None) -> str:
    """The user's own command with `flag` (and its `value`) added; an earlier value of that flag is replaced."""
    import shlex

    argv = list(getattr(args, "argv", None) or [])
    if not argv:
        return f"bench run ... {flag}" + (f" {value}" if value is not None else "")
    drop = {flag, _EXCLUSIVE.get(flag, flag)}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in drop:
            skip = value is not None and a == flag
        elif not any(a.startswith(f"{d}=") for d in drop):
            out.append(a)
    out += [flag] + ([value] if value is not None else [])
    return "bench " + shlex.join(out)


def cmd_run(args) -> int:
    import methods as registry
    from bench.config import parse_set
    from bench.runner import build_run_config, method_fits, preflight
    from bench.seeding import check_seed
    from bench.tracking import make_client

    overrides = parse_set(args.overrides)
    for seed in args.seeds:
        check_seed(seed, "--seeds")
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))}: seed {repeated[0]} is given twice (one run "
                         "folder per seed); list each seed once")
    if args.no_progress:
        overrides.setdefault("train.progress", "false")
    names = registry.names() if args.methods == ["all"] else args.methods
    for n in names:
        registry.get(n)  # unknown names fail before anything runs
    plan, skipped = [], []
    fitting = []
    for name in names:
        reason = method_fits(name, args.dataset)
        if reason:
            if args.methods != ["all"]:
                raise UsageError(reason)
            skipped.append((name, reason))
            continue
        fitting.append(name)
    per_method = overrides_per_method(overrides, fitting)
    for name in fitting:
        for seed in args.seeds:
            cfg = build_run_config(name, args.dataset, seed, args.preset or "paper", per_method[name],
                                   data_root=args.data_root, direction=args.direction, out=args.out,
                                   device=args.device, tracking_uri=args.tracking_uri,
                                   inception_weights=args.inception_weights, seg_weights=args.seg_weights)
            plan.append(cfg)
    # Settings, data and the tracking store are checked before any run folder or MLflow run exists.
    sizes, checked = {}, {}
    for cfg in plan:
        key = (cfg.dataset, cfg.data.root, cfg.data.direction, registry.get(cfg.method).paired,
               cfg.method_cfg.crop_size, cfg.train.device)
        if key not in checked:
            checked[key] = len(preflight(cfg)[1])
        sizes[cfg.method] = checked[key]
    check_preset_for_cpu(args, plan, sizes)
    if plan:
        make_client(plan[0].tracking_uri)
    for name, reason in skipped:
        log.info("skipping %s: %s", name, reason)
    if args.launcher == "slurm":
        from bench.launch import slurm

        return slurm.cmd(args, _requests(args, plan))
    if args.status:
        raise UsageError("--status shows the runs of a Slurm submission: add --launcher slurm")
    results = _pooled(plan, args) if args.workers else _sequential(plan, args)
    _print_summary(results, skipped)
    return 0 if all(r.ok for r in results) else 1


def _requests(args, plan):
    from bench.launch.matrix import RunRequest, run_argv

    return [RunRequest(cfg, run_argv(args, cfg.method, cfg.seed)) for cfg in plan]


def _pooled(plan, args) -> list:
    """The plan's runs in the local process pool: kept and refused folders are told here (as one run would),
    the rest each run as its own `bench run` process."""
    from bench.launch import pool
    from bench.launch.matrix import triage

    slots = pool.make_slots(pool.parse_devices(args.devices, args.device), args.runs_per_device, args.workers)
    requests = _requests(args, plan)
    launch, known = triage(requests, resume=args.resume, restart=args.restart,
                           allow_thread_change=args.allow_thread_change,
                           fix_command=lambda flag: command_with(args, flag))
    ran = {(r.method, r.seed): r for r in pool.run_matrix(launch, slots, args.tracking_uri)}
    known.update({f"{m}/seed{s}": r for (m, s), r in ran.items()})
    return [known[r.name] for r in requests if r.name in known]


def _sequential(plan, args) -> list:
    """Every run of the plan in this process, one after the other."""
    from bench.run_folder import RunFolderConflict
    from bench.runner import run_one

    results = []
    reporter = _reporter(plan[0].train.progress if plan else False, len(plan), args.progress_interval)
    with reporter or _null():
        for cfg in plan:
            handle = reporter.run(f"{cfg.method}/seed{cfg.seed}") if reporter else None
            try:
                results.append(run_one(cfg, resume=args.resume, restart=args.restart, progress=handle,
                                       allow_thread_change=args.allow_thread_change))
            except KeyboardInterrupt:
                raise
            except RunFolderConflict as exc:
                fixes = " or ".join(f"`{command_with(args, f)}`" for f in exc.fixes)
                msg = f"{exc}" + (f". Command: {fixes}" if fixes else "")
                if len(plan) == 1:  # the CLI's one error line says it; a log line too would say it twice
                    raise RunFolderConflict(msg) from None
                log.error("%s/seed%d not run: %s", cfg.method, cfg.seed, msg)
                results.append(_failed(cfg, RunFolderConflict(msg)))
            except BenchError as exc:
                if len(plan) == 1:
                    raise
                log.error("%s/seed%d failed: %s", cfg.method, cfg.seed, exc)
                results.append(_failed(cfg, exc))
            except Exception as exc:  # one failing method must not stop the others
                log.error("%s/seed%d crashed: %s: %s (traceback in %s)", cfg.method, cfg.seed, type(exc).__name__,
                          exc, cfg.run_dir / "error.txt")
                log.debug("%s/seed%d traceback", cfg.method, cfg.seed, exc_info=True)
                results.append(_failed(cfg, exc))
    return results


def overrides_per_method(overrides: dict[str, str], names: list[str]) -> dict[str, dict[str, str]]:
    """Each method's `--set` items: `cut.x=1` only for cut; a bare `x=1` for the selected methods that have `x`.

    A bare key that none of the methods has is an error (with the first method's suggestion), and so is a key
    scoped to a method that is not selected; the methods a bare key skips are listed in one log line.
    """
    import dataclasses

    import methods as registry
    from bench.config import split_overrides

    all_names = set(registry.names())
    fields = {name: {f.name for f in dataclasses.fields(registry.get(name).Config)} for name in names}
    out = {name: dict(overrides) for name in names}
    for key in overrides:
        head, dot, _ = key.partition(".")
        if dot and head in all_names and head not in names:
            raise UsageError(f"--set {key}: {head} is not among the methods run here ({', '.join(names) or 'none'})")
        if dot:
            continue
        have = [n for n in names if key in fields[n]]
        if not have:
            if names:
                split_overrides({key: overrides[key]}, registry.get(names[0]).Config)  # raises, naming the key
            continue
        lacking = [n for n in names if key not in fields[n]]
        if lacking:
            log.info("--set %s applies to %s; not to %s (no such option; scope it as METHOD.%s to be explicit)",
                     key, ", ".join(have), ", ".join(lacking), key)
            for n in lacking:
                del out[n][key]
    return out


def _failed(cfg, exc):
    from bench.runner import RunResult

    return RunResult(cfg.method, cfg.dataset, cfg.seed, "failed", cfg.run_dir, error=f"{type(exc).__name__}: {exc}")


def _progress(enabled: bool, total_runs: int | None = None, interval: float | None = None):
    """The progress reporter other commands running many runs use (`bench reproduce`); see `_reporter`."""
    return _reporter(enabled, total_runs, interval)


def _reporter(enabled: bool, total_runs: int | None, interval: float | None):
    """A rich bar per run on a terminal, plain progress lines every `interval` s otherwise (bench.progress)."""
    if not enabled:
        return None
    from bench.progress import Reporter

    if interval is not None and interval <= 0:
        raise UsageError(f"--progress-interval {interval:g}: use a positive number of seconds")
    return Reporter(total_runs=total_runs, interval=interval)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def metric_header(name: str) -> str:
    """Column header with the unit from the catalogue: FID, KID×100, SWD ×1e3, PSNR dB, mIoU %."""
    from bench.metrics import catalog

    m = catalog.get(name)
    return m.label if not m.unit or m.unit in m.label else f"{m.label} {m.unit}"


def summary_metrics(results) -> list[str]:
    """Every metric any run reported (computed or n/a), in catalogue order."""
    from bench.metrics import catalog

    seen = {k for r in results for k in (r.metrics.get("last") or {}) if k != "epoch"}
    seen |= {k for r in results for k in r.unavailable}
    return [m for m in catalog.CATALOG if m in seen]


def _cell(name: str, value, unavailable: bool) -> str:
    from bench.metrics import catalog

    if value is None:
        return "n/a" if unavailable else "—"
    return catalog.get(name).format(float(value))


def _print_summary(results, skipped) -> None:
    """One row per run with every metric it computed (units in the headers), the selection metric at the best
    epoch, and below the table each distinct reason for an n/a once, with the runs it applies to."""
    from rich.console import Console
    from rich.table import Table

    names = summary_metrics(results)
    selected = next((r.selected_by for r in results if r.selected_by in names), None)
    table = Table(title="bench run summary", caption="scores of the last checkpoint" + (
        f"; best = the epoch with the best held-out {metric_header(selected)}" if selected else ""))
    table.add_column("method", no_wrap=True)
    table.add_column("seed", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for name in names:
        table.add_column(metric_header(name), justify="right", no_wrap=True)
    if selected:
        table.add_column(f"{metric_header(selected)} best (epoch)", justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    reasons: dict[str, dict[str, list[str]]] = {}  # reason -> {metric: [runs]}
    for r in results:
        last, best = r.metrics.get("last") or {}, r.metrics.get("best") or {}
        na = r.unavailable
        for metric, reason in na.items():
            reasons.setdefault(reason, {}).setdefault(metric, []).append(f"{r.method}/seed{r.seed}")
        cells = [_cell(n, last.get(n), n in na) for n in names]
        if selected:
            value = best.get(selected)
            cells.append(f"{_cell(selected, value, selected in na)} ({best.get('epoch', '—')})" if value is not None
                         else _cell(selected, None, selected in na))
        status = r.status_text if not r.error else f"{r.status}: {r.error[:60]}"
        table.add_row(r.method, str(r.seed), status, *cells, f"{r.seconds:.0f}s")
    notes: dict[str, list[str]] = {}
    for name, reason in skipped:
        table.add_row(name, "—", "skipped", *([""] * (len(names) + bool(selected) + 1)))
        notes.setdefault(f"skipped: {reason.replace(name, 'the method')}", []).append(name)
    console = Console(stderr=False)
    if not console.is_terminal:  # a log file or a pipe: as wide as the table needs (a terminal squeezes it)
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update_width(400), table).maximum
        console = Console(stderr=False, width=max(console.width, needed))
    console.print(table)
    everyone = list(dict.fromkeys(f"{r.method}/seed{r.seed}" for r in results))
    for reason, by_metric in reasons.items():
        metrics = ", ".join(metric_header(m) for m in by_metric)
        runs = [run for run in everyone if any(run in who for who in by_metric.values())]
        who = "all runs" if len(everyone) > 1 and len(runs) == len(everyone) else ", ".join(runs)
        console.print(f"{metrics} n/a: {reason} ({who})", markup=False, highlight=False, soft_wrap=True)
    for note, who in notes.items():
        console.print(f"{note} ({', '.join(who)})", markup=False, highlight=False, soft_wrap=True)

"""`bench run`: train and evaluate methods on a dataset under fixed seeds, with a summary table at the end."""

from __future__ import annotations

import logging

from bench.errors import BenchError, UsageError

log = logging.getLogger("bench")


def register(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate methods on a dataset under fixed seeds",
                       description="Train and evaluate each method on DATASET for each seed; track in MLflow.")
    p.add_argument("--methods", nargs="+", required=True, metavar="NAME",
                   help="method names, or 'all' for every method that fits the dataset (see `bench methods`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `bench data list`)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="N", help="seeds (default: 0)")
    p.add_argument("--preset", default="paper", help="paper (official settings, 256 px; for GPUs) or smoke (CPU-sized)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: a method field (lambda_NCE=2), or data.*, train.*, eval.*; repeatable")
    p.add_argument("--data-root", help="dataset folder in its official layout (default: $BENCH_DATA_ROOT/<name> or the cache)")
    p.add_argument("--direction", help="translation direction (default: the dataset's paper direction)")
    p.add_argument("--out", default="runs", help="root of the run folders (default: runs)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--resume", action="store_true", help="continue runs from their last checkpoint")
    p.add_argument("--inception-weights", default=None, help="FID Inception weights file (or $BENCH_INCEPTION_WEIGHTS)")
    p.add_argument("--seg-weights", default=None, help="DRN-D-22 Cityscapes weights for segmentation scores")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    import methods as registry
    from bench.config import parse_set
    from bench.runner import build_run_config, method_fits, run_one

    from bench.seeding import check_seed

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
    for name in names:
        reason = method_fits(name, args.dataset)
        if reason:
            if args.methods != ["all"]:
                raise UsageError(reason)
            skipped.append((name, reason))
            continue
        for seed in args.seeds:
            cfg = build_run_config(name, args.dataset, seed, args.preset, overrides, data_root=args.data_root,
                                   direction=args.direction, out=args.out, device=args.device,
                                   tracking_uri=args.tracking_uri, inception_weights=args.inception_weights,
                                   seg_weights=args.seg_weights)
            plan.append(cfg)
    for name, reason in skipped:
        log.info("skipping %s: %s", name, reason)
    results = []
    progress = _progress(plan[0].train.progress if plan else False)
    with progress or _null():
        for cfg in plan:
            try:
                results.append(run_one(cfg, resume=args.resume, progress=progress))
            except KeyboardInterrupt:
                raise
            except BenchError as exc:
                log.error("%s/seed%d failed: %s", cfg.method, cfg.seed, exc)
                results.append(_failed(cfg, exc))
                if len(plan) == 1:
                    raise
            except Exception as exc:  # one failing method must not stop the others
                log.error("%s/seed%d crashed: %s: %s (traceback in %s)", cfg.method, cfg.seed, type(exc).__name__,
                          exc, cfg.run_dir / "error.txt")
                log.debug("%s/seed%d traceback", cfg.method, cfg.seed, exc_info=True)
                results.append(_failed(cfg, exc))
    _print_summary(results, skipped)
    return 0 if all(r.status == "finished" for r in results) else 1


def _failed(cfg, exc):
    from bench.runner import RunResult

    return RunResult(cfg.method, cfg.dataset, cfg.seed, "failed", cfg.run_dir, error=f"{type(exc).__name__}: {exc}")


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), transient=False)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _fmt(v, unavailable: bool = False) -> str:
    if v is None:
        return "n/a" if unavailable else "—"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _print_summary(results, skipped) -> None:
    """One row per run; skipped methods and unavailable metrics as grouped notes below (no wrapped cells)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench run summary")
    table.add_column("method", no_wrap=True)
    for col in ("seed", "status", "FID last", "FID best (epoch)", "KID×100 last", "time"):
        table.add_column(col)
    notes: dict[str, list[str]] = {}
    for r in results:
        last, best = r.metrics.get("last", {}), r.metrics.get("best", {})
        na = r.unavailable
        for metric, reason in na.items():
            notes.setdefault(f"{metric.upper()} n/a: {reason}", []).append(f"{r.method}/seed{r.seed}")
        if best and best.get("fid") is not None:
            best_txt = f"{_fmt(best['fid'])} ({best.get('epoch', '—')})"
        else:
            best_txt = _fmt(None, "fid" in na)
        status = r.status if not r.error else f"{r.status}: {r.error[:60]}"
        table.add_row(r.method, str(r.seed), status, _fmt(last.get("fid"), "fid" in na), best_txt,
                      _fmt(last.get("kid"), "kid" in na), f"{r.seconds:.0f}s")
    for name, reason in skipped:
        table.add_row(name, "—", "skipped", "", "", "", "")
        notes.setdefault(f"skipped: {reason.replace(name, 'the method')}", []).append(name)
    console = Console(stderr=False)
    console.print(table)
    for note, who in notes.items():
        console.print(f"{note} ({', '.join(who)})", markup=False, highlight=False, soft_wrap=True)

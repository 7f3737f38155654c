"""`bench` command line: thin parsing and printing around the library.

    bench run --methods all --dataset toy --preset smoke [--seeds 0 1] [--set key=value ...]
    bench eval | table | plot | study | data | import | methods | doctor
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from bench.errors import BenchError, UsageError

log = logging.getLogger("bench")

# Subsystems that add their own subcommands: module -> register(subparsers).
SUBCOMMAND_MODULES = ("bench.cli_data", "bench.cli_eval", "bench.cli_table", "bench.cli_study")


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)], force=True)
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------ run
def add_run_parser(sub) -> None:
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

    overrides = parse_set(args.overrides)
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
                log.exception("%s/seed%d crashed", cfg.method, cfg.seed)
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


# ------------------------------------------------------------------------------------------ methods
def cmd_methods(args) -> int:
    """One block per method: name, kind, official code and licence, then the paper."""
    import methods as registry

    for name in registry.names():
        try:
            cls = registry.get(name)
        except ImportError as exc:
            print(f"{name:22s} unavailable: {exc}")
            continue
        kind = ", ".join(k for k, on in (("paired", cls.paired), ("multimodal", cls.multimodal),
                                         ("two-way", cls.two_way)) if on) or "unpaired"
        print(f"{name:22s} {kind:20s} {cls.official_code}  [{cls.licence}]")
        print(f"{'':22s} {cls.citation}")
    return 0


# ------------------------------------------------------------------------------------------ import
def cmd_import(args) -> int:
    from bench.importing import import_checkpoint

    out = import_checkpoint(args.method, Path(args.checkpoint), net=args.net, out=Path(args.out),
                            dataset=args.dataset, data_root=args.data_root, direction=args.direction,
                            preset=args.preset, overrides=args.overrides, device=args.device or "auto",
                            inception_weights=args.inception_weights)
    print(out)
    return 0


def add_import_parser(sub) -> None:
    p = sub.add_parser("import", help="load an official generator checkpoint (and optionally evaluate it)")
    p.add_argument("method")
    p.add_argument("checkpoint", help="official .pth file, e.g. latest_net_G.pth or latest_net_G_A.pth")
    p.add_argument("--net", help="which net the file holds (default: from the file name, else the generator)")
    p.add_argument("--dataset", help="evaluate the imported generator on this dataset's test split")
    p.add_argument("--data-root")
    p.add_argument("--direction")
    p.add_argument("--preset", default="paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/imported")
    p.add_argument("--device", default=None)
    p.add_argument("--inception-weights", default=None)
    p.set_defaults(func=cmd_import)


# ------------------------------------------------------------------------------------------ doctor
def cmd_doctor(args) -> int:
    import os
    import platform

    import torch

    print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.cuda.is_available()}  "
          f"threads {torch.get_num_threads()}")
    for var in ("BENCH_INCEPTION_WEIGHTS", "BENCH_DATA_ROOT", "BENCH_CACHE_DIR", "MLFLOW_TRACKING_URI", "TORCH_HOME"):
        print(f"{var}={os.environ.get(var, '')}")
    try:
        from bench.metrics.features import resolve_inception_weights  # type: ignore

        print(f"inception weights: {resolve_inception_weights(None, download=False)}")
    except Exception as exc:  # doctor reports, never fails
        print(f"inception weights: unavailable ({exc})")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    add_import_parser(sub)
    sub.add_parser("methods", help="list registered methods").set_defaults(func=cmd_methods)
    sub.add_parser("doctor", help="show the environment bench sees").set_defaults(func=cmd_doctor)
    for module in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; a BenchError becomes one line on stderr and its exit code."""
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`bench table` and `bench plot`: paper tables and figures from the runs tracked in MLflow.

    bench table --metric fid,kid [--dataset afhq ...] [--methods cut ...] [--select best|last]
                [--format md|latex|csv] [--published] [--out FILE] [--tracking-uri URI] [--study NAME]
    bench plot  [--metric fid] [--kind curves sweep grid] [--study NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.cli.lists import list_flag

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "--datasets", dest="datasets", **list_flag(default=None, metavar="NAME"),
                   help="datasets (MLflow experiments) to include (default: all)")
    p.add_argument("--methods", **list_flag(default=None, metavar="NAME"), help="methods to include (default: all)")
    p.add_argument("--select", choices=("best", "last"), default="last",
                   help="checkpoint whose test scores are shown: last (default; the epoch the official test scripts "
                        "evaluate) or best (the epoch with the best in-training score, selected on the test set)")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="ablation view: runs tagged bench.study=NAME grouped by their swept parameters")
    p.add_argument("--published", action="store_true",
                   help="put the published numbers (results/published/*.csv) beside the reproduced ones")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def register(subparsers) -> None:
    """Add the `table` and `plot` subcommands to a `bench` subparsers object."""
    t = subparsers.add_parser("table", help="paper-style table of tracked runs (mean ± std over seeds)",
                              description="Methods as rows, datasets x metrics as columns, mean ± std over seeds, "
                                          "best in bold; with --published the papers' numbers and the difference.")
    t.add_argument("--metric", "--metrics", dest="metric", **list_flag(default=["fid"], metavar="NAME"),
                   help="metrics, e.g. fid,kid or fid kid, or miou,pixel_acc,class_acc,fid (default: fid)")
    _common(t)
    t.add_argument("--format", choices=("md", "latex", "csv"), default="md", help="output format (default: md)")
    t.add_argument("--out", "--output", dest="out", default=None, metavar="FILE", help="write to FILE instead of stdout")
    t.add_argument("--paper", default=None, help="compare with this paper's numbers only (e.g. qsattn2022)")
    t.add_argument("--baseline", **list_flag(default=None, metavar="METHOD"),
                   help="with --study: methods whose non-study runs form the baseline row (default: the study's)")
    t.add_argument("--preset", **list_flag(default=None, metavar="NAME"), help="only runs of these presets")
    t.set_defaults(func=cmd_table)

    p = subparsers.add_parser("plot", help="figures from tracked runs: curves, sweeps, qualitative grids",
                              description="Metric vs epoch per method (one figure per dataset), metric vs swept "
                                          "value with error bars (--study), and input | outputs image grids; "
                                          "PNG and PDF at paper column width.")
    p.add_argument("--metric", default="fid", help="metric to plot (default: fid)")
    _common(p)
    p.add_argument("--kind", **list_flag(choices=("curves", "sweep", "grid"), default=("curves", "sweep", "grid")),
                   help="figure kinds (default: all; sweep needs --study)")
    p.add_argument("--param", default=None, help="with --study: the swept parameter on the x axis")
    p.add_argument("--n-images", type=int, default=4, help="test images (rows) in the qualitative grid (default: 4)")
    p.add_argument("--format", dest="formats", **list_flag(choices=("png", "pdf"), default=("png", "pdf")),
                   help="file formats (default: png pdf)")
    p.add_argument("--out", "--output", dest="out", default="results/figures", metavar="DIR",
                   help="output folder (default: results/figures)")
    p.set_defaults(func=cmd_plot)


def cmd_table(args) -> int:
    """Build, render and print (or write) the table; returns the exit code."""
    from bench.errors import DataError, UsageError
    from bench.metrics.catalog import parse_metrics
    from bench.tables import TableOptions, build_table, no_runs, render
    from bench.tracking import missing_store

    if args.baseline and not args.study:
        raise UsageError("--baseline only applies with --study NAME")
    options = TableOptions(metrics=tuple(parse_metrics(args.metric)), select=args.select,
                           datasets=tuple(args.datasets) if args.datasets else None,
                           methods=tuple(args.methods) if args.methods else None, published=args.published,
                           paper=args.paper, study=args.study,
                           baseline=tuple(args.baseline) if args.baseline else None,
                           presets=tuple(args.preset) if args.preset else None)
    runs = None
    absent = missing_store(args.tracking_uri)
    if absent is not None:
        # Opening it would create an empty database; say where bench looked instead.
        where = (f"no tracking store at {absent} (sqlite:///mlflow.db is the file in the folder bench runs in); "
                 "run bench table in the folder where you ran `bench run`, or pass --tracking-uri sqlite:////PATH/mlflow.db")
        if not args.published:
            raise DataError(where)
        log.warning("%s; the table has the published numbers only", where)
        runs = no_runs()
    table = build_table(options, tracking_uri=args.tracking_uri, runs=runs)
    text = render(table, args.format)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        log.info("wrote %s", out)
    else:
        sys.stdout.write(text)
    return 0 if len(table.cells) else 1


def cmd_plot(args) -> int:
    """Draw the requested figures; returns 0 when at least one file was written."""
    from bench.errors import DataError
    from bench.plots import make_figures
    from bench.tracking import missing_store

    absent = missing_store(args.tracking_uri)
    if absent is not None:
        raise DataError(f"no tracking store at {absent} (sqlite:///mlflow.db is the file in the folder bench runs in); "
                        "run bench plot in the folder where you ran `bench run`, or pass --tracking-uri URI")
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting logs every table it prunes
    kinds = tuple(args.kind)
    if "sweep" in kinds and not args.study and args.kind != ("curves", "sweep", "grid"):
        from bench.errors import UsageError

        raise UsageError("--kind sweep needs --study NAME (the study whose swept values go on the x axis)")
    not_drawn: list[str] = []
    written = make_figures(args.out, metric=args.metric, tracking_uri=args.tracking_uri, datasets=args.datasets,
                           methods=args.methods, study=args.study, param=args.param, select=args.select,
                           kinds=kinds, n_images=args.n_images, published=args.published, formats=args.formats,
                           not_drawn=not_drawn)
    for path in written:
        log.info("wrote %s", path)
    for line in not_drawn:
        print(f"not drawn: {line}", file=sys.stderr)
    if not written:
        log.warning("no figure written (no matching runs with eval history, study runs or test artifacts)")
    return 0 if written else 1

"""`bench report`: one self-contained HTML page (table with verdicts, metric-vs-epoch curves, image grids).

    bench report --dataset horse2zebra [--runs runs] [--methods cut cyclegan] [--out report.html]
    bench report --reproduce qsattn2022:1 [--preset smoke]     # a table saved by `bench reproduce`
"""

from __future__ import annotations

import logging

log = logging.getLogger("bench")


def register(sub) -> None:
    p = sub.add_parser("report", help="self-contained HTML page of a dataset's runs or a reproduce table",
                       description="Writes one HTML file (images embedded as data URIs): the results table with a "
                                   "verdict per cell, metric-vs-epoch curves from each run's history, and the same "
                                   "test inputs translated by every method and seed side by side.",
                       epilog="example: bench report --reproduce qsattn2022:1 --preset smoke --out h2z.html")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", help="report on the run folders of this dataset (runs/<dataset>/...)")
    what.add_argument("--reproduce", metavar="PAPER:TABLE", help="report on a table saved by `bench reproduce`")
    p.add_argument("--preset", default="paper", help="with --reproduce: the preset it was run with (default paper)")
    p.add_argument("--results", default="results/reproduce", metavar="DIR",
                   help="with --reproduce: where `bench reproduce` saved it (default: results/reproduce)")
    p.add_argument("--runs", default="runs", metavar="DIR", help="with --dataset: root of the run folders (default: runs)")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME", help="only these methods")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N", help="with --dataset: only these seeds")
    p.add_argument("--metric", "--metrics", dest="metrics", default="fid",
                   help="comma-separated metrics for the curves (default: fid)")
    p.add_argument("--n-images", type=int, default=4, help="test inputs (rows) in the image grid (default: 4)")
    p.add_argument("--spread", action="store_true",
                   help="with --dataset: also re-score the saved images for the protocol-spread column")
    p.add_argument("--out", "--output", dest="out", default=None, metavar="FILE",
                   help="the HTML file (default: results/reports/<dataset or paper_table>.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from pathlib import Path

    from bench import reproduce
    from bench.errors import DataError
    from bench.metrics.catalog import parse_metrics
    from bench.report import build_page, write

    metrics = parse_metrics(args.metrics)
    if args.reproduce:
        ref = reproduce.parse_ref(args.reproduce)
        path = reproduce.result_path(ref, args.preset, args.results)
        if not path.is_file():
            raise DataError(f"{path} does not exist: run `bench reproduce {ref} --preset {args.preset}` first "
                            "(or pass --results/--preset)")
        page = build_page(reproduce_table=reproduce.load(path), methods=args.methods, metrics=metrics,
                          n_images=args.n_images)
        out = Path(args.out or f"results/reports/{ref.slug}.{args.preset}.html")
    else:
        page = build_page(dataset=args.dataset, runs_root=args.runs, methods=args.methods, seeds=args.seeds,
                          metrics=metrics, n_images=args.n_images, spread=args.spread)
        out = Path(args.out or f"results/reports/{args.dataset}.html")
    write(page, out)
    log.info("wrote %s (%.0f kB)", out, out.stat().st_size / 1024)
    print(out)
    return 0

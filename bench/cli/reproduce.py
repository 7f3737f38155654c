"""`bench reproduce PAPER:TABLE`: plan, run (or resume) and rebuild a published table with a verdict per cell.

    bench reproduce qsattn2022:1 --datasets horse2zebra --seeds 0 1 2 --preset paper
    bench reproduce qsattn2022:1 --datasets horse2zebra --data-root DIR --preset smoke --seeds 0 1
    bench reproduce nicegan2020:comparison --dry-run          # the plan and its cost only
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("bench")


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="rerun a published table and say, per number, whether it is reproduced",
                       description="Reads the published rows of PAPER:TABLE (results/published/), plans the "
                                   "(method, dataset, seed) runs that cover them and prints the plan with its cost, "
                                   "runs or resumes them exactly as `bench run` does (a finished run is never "
                                   "retrained), then renders the table: published value, mean ± std over seeds, "
                                   "95%% intervals, the protocol spread and a verdict with its reason.",
                       epilog="example: bench reproduce qsattn2022:1 --datasets horse2zebra --preset smoke "
                              "--seeds 0 1 --data-root /path/to/horse2zebra")
    p.add_argument("table", metavar="PAPER:TABLE", help="published table, e.g. qsattn2022:1 or dclgan2021:2")
    p.add_argument("--datasets", "--dataset", dest="datasets", nargs="+", default=None, metavar="NAME",
                   help="only these datasets of the table (default: every dataset bench has)")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME", help="only these methods of the table")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N", help="seeds (default: 0 1 2)")
    p.add_argument("--preset", default="paper", choices=("paper", "smoke"),
                   help="paper (the authors' settings, 256 px; GPUs) or smoke (CPU-sized; verdicts say "
                        "'not comparable')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for every run, as in bench run (changes what the verdict compares)")
    p.add_argument("--data-root", help="the dataset's folder (with one --datasets NAME)")
    p.add_argument("--out", "--output", dest="out", default="runs", help="root of the run folders (default: runs, as bench run)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--inception-weights", default=None, help="FID Inception weights file (or $BENCH_INCEPTION_WEIGHTS)")
    p.add_argument("--seg-weights", default=None, help="DRN-D-22 Cityscapes weights for segmentation scores")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost, then stop")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="bootstrap resamples of the test images for the FID/KID interval (0 = none; default 200)")
    p.add_argument("--no-spread", action="store_true", help="skip the protocol spread (re-scoring saved images)")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md", help="table format on stdout")
    p.add_argument("--results", default="results/reproduce", metavar="DIR",
                   help="where the table is saved as JSON + Markdown for `bench report` (default: results/reproduce)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from bench import reproduce
    from bench.cli.run import _null, _progress
    from bench.config import parse_set

    ref = reproduce.parse_ref(args.table)
    overrides = parse_set(args.overrides)
    if args.no_progress:
        overrides.setdefault("train.progress", "false")
    the_plan = reproduce.plan(ref, seeds=args.seeds, preset=args.preset, datasets=args.datasets,
                              methods=args.methods, overrides=overrides, data_root=args.data_root, out=args.out,
                              device=args.device, tracking_uri=args.tracking_uri,
                              inception_weights=args.inception_weights, seg_weights=args.seg_weights)
    sys.stdout.write(the_plan.text())
    sys.stdout.flush()
    if args.dry_run:
        return 0
    to_train = sum(r.status not in ("finished", reproduce.STATUS_OTHER) for r in the_plan.runs)
    progress = _progress(the_plan.runs[0].cfg.train.progress if the_plan.runs else False, to_train)
    with progress or _null():
        done = reproduce.execute(the_plan, progress=progress)
    log.info("trained or resumed %d run(s), kept %d finished run(s), %d failed", len(done.trained), len(done.kept),
             len(done.failed))
    from bench.runner import resolve_device

    device = str(resolve_device(args.device or "auto"))
    table = reproduce.collect(the_plan, bootstrap=args.bootstrap, spread=not args.no_spread, device=device)
    for name, err in done.failed.items():
        table.notes.append(f"{name} failed: {err}")
    paths = reproduce.save(table, args.results)
    for path in paths:
        log.info("wrote %s", path)
    _track(table, paths, args.tracking_uri)
    sys.stdout.write("\n" + reproduce.render(table, args.format))
    return 1 if done.failed else 0


def _track(table, paths, tracking_uri) -> None:
    """The rebuilt table as an MLflow run of kind `reproduce` (experiment 'reproduce'), beside the runs it read."""
    from bench.tracking import TAG_KIND, TAG_PRESET, Tracker

    verdicts = {}
    for r in table.results:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    tracker = Tracker.start(tracking_uri=tracking_uri, experiment="reproduce", run_name=f"{table.ref}/{table.preset}",
                            tags={TAG_KIND: "reproduce", TAG_PRESET: table.preset,
                                  "bench.reproduce.table": str(table.ref),
                                  "bench.reproduce.seeds": " ".join(map(str, table.seeds)),
                                  **{f"bench.reproduce.{k.replace(' ', '_')}": str(v) for k, v in verdicts.items()}})
    for path in paths:
        tracker.log_artifact(path)
    tracker.finish("FINISHED")

"""`bench eval`: score any two image folders, or re-score a finished run.

    bench eval --real DIR --fake DIR --metrics fid,kid,swd [--protocol clean] [--json out.json]
    bench eval --real LABELS --fake DIR --metrics l1,psnr,ssim            (paired, matched by file name)
    bench eval --fake DIR --labels LABEL_DIR --seg-weights drn_d_22_cityscapes.pth --metrics miou,pixel_acc,class_acc
    bench eval --run runs/afhq/cut/seed0 [--tag best] [--tracking-uri URI]

`--run` reads the run's config.json, scores eval/<tag>/fake against eval/reference with the metrics the run
reported (metrics.json) or --metrics (eval/last when the best epoch is the last), writes metrics_rescored.json
into the run folder and logs the scores to the run's own MLflow run, in the store the run recorded
(tracking.json), from any working directory. Metrics the run could not compute (e.g. FID offline) also fill
its `<tag>/<metric>` values, so `bench table` shows them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bench.cli.lists import list_flag, split_items
from bench.errors import BenchError, DataError, UsageError

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("fid", "kid", "swd")
SEG_ALIASES = {"seg": ("miou", "pixel_acc", "class_acc")}


def register(subparsers) -> None:
    """Add the `eval` subcommand to the main `bench` parser."""
    p = subparsers.add_parser("eval", help="score two image folders (FID, KID, SWD, paired, segmentation) or a run",
                              description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(p)
    p.set_defaults(func=cmd_eval)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to score")
    src.add_argument("--real", help="folder of reference (or ground-truth) images")
    src.add_argument("--fake", help="folder of generated images")
    src.add_argument("--run", help="a finished run folder (config.json, eval/<tag>/fake, eval/reference)")
    src.add_argument("--tag", default="last", help="with --run: which evaluation to re-score (last, best; default last)")
    src.add_argument("--metrics", **list_flag(default=None, metavar="NAME"),
                     help="fid,kid,swd (default) or fid kid swd; l1,psnr,ssim; miou,pixel_acc,class_acc (or seg)")
    opt = p.add_argument_group("protocol")
    opt.add_argument("--protocol", default=None, help="legacy_pytorch (pytorch-fid, default) or clean (clean-fid resize)")
    opt.add_argument("--inception-weights", default=None,
                     help="FID Inception weights (else $BENCH_INCEPTION_WEIGHTS, the torch hub cache, a download)")
    opt.add_argument("--seed", type=int, default=None, help="seed of KID subsets and SWD sampling (default 0 or the run's)")
    opt.add_argument("--kid-subsets", type=int, default=50, help="KID subsets (default 50, NICE-GAN)")
    opt.add_argument("--kid-subset-size", type=int, default=None, help="KID subset size (default min(1000, n))")
    opt.add_argument("--labels", default=None, help="colour label maps for the segmentation scores (matched by name)")
    opt.add_argument("--seg-weights", default=None, help="Cityscapes DRN checkpoint (else $BENCH_SEG_WEIGHTS)")
    opt.add_argument("--seg-arch", default="drn_d_22", help="DRN-D depth of --seg-weights (default drn_d_22)")
    opt.add_argument("--seg-resolution", default="256x128", help="WxH the photos/labels are segmented at (default 256x128)")
    opt.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                     help="recorded in every fingerprint, e.g. direction=AtoB reference_split=test; repeatable")
    io = p.add_argument_group("input and output")
    io.add_argument("--allow-mixed-sizes", action="store_true", help="accept folders whose images differ in size")
    io.add_argument("--convert-rgb", action="store_true", help="convert grayscale/RGBA/palette images to RGB")
    io.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    io.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 50)")
    io.add_argument("--num-workers", type=int, default=0, help="decoding processes (default 0: threads)")
    io.add_argument("--cache-dir", default=None, help="feature cache (default $BENCH_CACHE_DIR or ~/.cache/bench)")
    io.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    io.add_argument("--json", default=None, help="also write the results to this JSON file")
    io.add_argument("--tracking-uri", default=None, help="with --run: MLflow tracking URI (else $MLFLOW_TRACKING_URI "
                                                        "or the run's)")


def _parse_metrics(text: str | list[str] | None) -> list[str] | None:
    if text is None:
        return None
    names: list[str] = []
    for part in split_items(text):
        if part:
            names.extend(SEG_ALIASES.get(part, (part,)))
    if not names:
        raise UsageError("--metrics is empty; e.g. --metrics fid,kid,swd")
    return list(dict.fromkeys(names))


def _parse_context(items: list[str]) -> dict[str, str]:
    from bench.config import parse_set

    return parse_set(items, flag="--context", example="direction=AtoB")


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--seg-resolution {text!r}: use WIDTHxHEIGHT, e.g. 256x128") from None
    return w, h


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def score(real, fake, metrics: list[str], *, labels=None, seg_weights=None, seg_arch="drn_d_22",
          seg_resolution=(256, 128), protocol="legacy_pytorch", device="cpu", batch_size=50, num_workers=0, seed=0,
          inception_weights=None, cache_dir=None, cache=None, context=None, kid_subsets=50, kid_subset_size=None,
          allow_mixed_sizes=False, convert_rgb=False) -> dict[str, Any]:
    """Compute `metrics` with the right entry point each; results keyed by metric name."""
    # From the defining modules: once bench.metrics.evaluate is imported, the package attribute `evaluate` is
    # that submodule, not the function (`from bench.metrics import evaluate` then gets a module).
    from bench.metrics.evaluate import METRICS, evaluate
    from bench.metrics.segmentation import segmentation_scores
    from bench.metrics.evaluate import check_metric_names

    seg = [m for m in metrics if METRICS.get(m) is not None and METRICS[m].kind == "segmentation"]
    rest = [m for m in metrics if m not in seg]
    if rest:
        check_metric_names(rest)
    results: dict[str, Any] = {}
    if rest:
        if real is None or fake is None:
            raise UsageError(f"{', '.join(rest)} need --real and --fake (or --run)")
        # One group at a time (Inception metrics share their features), so that when a later group fails
        # (e.g. SWD on mixed image sizes) the numbers already computed are still shown.
        for group in _metric_groups(rest):
            try:
                results.update(evaluate(real, fake, group, protocol=protocol, device=device, batch_size=batch_size,
                                        num_workers=num_workers, seed=seed, inception_weights=inception_weights,
                                        cache_dir=cache_dir, context=context, kid_subsets=kid_subsets,
                                        kid_subset_size=kid_subset_size, allow_mixed_sizes=allow_mixed_sizes,
                                        convert_rgb=convert_rgb, cache=cache))
            except BenchError as exc:
                exc.partial_results = dict(results)
                raise
    if seg:
        if fake is None or labels is None:
            raise UsageError(f"{', '.join(seg)} need --fake and --labels (the colour label maps the photos come from)")
        seg_results = segmentation_scores(fake, labels, seg_weights, arch=seg_arch, resolution=seg_resolution,
                                          device=device, batch_size=min(batch_size, 16), num_workers=num_workers,
                                          convert_rgb=convert_rgb, context=context)
        results.update({m: seg_results[m] for m in seg})
    return {m: results[m] for m in metrics}


def _metric_groups(names: list[str]) -> list[list[str]]:
    """fid and kid together (one Inception pass), every other metric on its own, in the order given."""
    from bench.metrics.evaluate import INCEPTION_METRICS

    inception = [m for m in names if m in INCEPTION_METRICS]
    groups, placed = [], False
    for m in names:
        if m in INCEPTION_METRICS:
            if not placed:
                groups.append(inception)
                placed = True
        else:
            groups.append([m])
    return groups


def _run_settings(run_dir: Path, args) -> dict[str, Any]:
    """Inputs and defaults for re-scoring a finished run."""
    if not (run_dir / "config.json").is_file():
        raise DataError(f"{run_dir} has no config.json; --run expects a bench run folder (runs/<dataset>/<method>/seed<N>)")
    cfg = _read_json(run_dir / "config.json")
    ev = cfg.get("eval") or {}
    reported = _read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    tags = [args.tag]
    fake = run_dir / "eval" / args.tag / "fake"
    last_epoch, best_epoch = ((reported.get(t) or {}).get("epoch") for t in ("last", "best"))
    if last_epoch is not None and last_epoch == best_epoch and args.tag in ("last", "best"):
        # The best epoch is the last one: the run scored those weights once, under eval/last; the scores are both.
        fake, tags = run_dir / "eval" / "last" / "fake", ["last", "best"]
        log.info("the best epoch (%d) is the last: re-scoring eval/last for both last/ and best/", last_epoch)
    real = run_dir / "eval" / "reference"
    for path, what in ((fake, f"the {args.tag} fakes"), (real, "the reference images")):
        if not path.is_dir():
            if (run_dir / "checkpoints" / "last.pt").is_file() and not (run_dir / "metrics.json").is_file():
                raise DataError(f"{run_dir}: the run's final evaluation did not finish ({path} is missing); run "
                                "the same `bench run ... --resume` to evaluate it without retraining (evaluation "
                                "settings may be corrected: --set eval.KEY=VALUE)")
            raise DataError(f"{path} is missing ({what}); was the run evaluated? (--tag last|best)")
    metrics = _parse_metrics(args.metrics)
    if metrics is None:
        metrics = list(ev.get("metrics") or [])
    if not metrics and reported:
        metrics = list((reported.get(args.tag) or {}).get("metrics") or {})
    from bench.metrics import METRICS

    skipped = [m for m in metrics if m not in METRICS or METRICS[m].kind == "diversity"]
    if skipped:  # these need the model (samples per input), not the PNGs on disk
        log.info("not re-scoring %s: it needs the trained model, not the saved images", ", ".join(skipped))
    metrics = [m for m in metrics if m not in skipped] or list(DEFAULT_METRICS)
    labels = args.labels or (run_dir / "eval" / "labels" if (run_dir / "eval" / "labels").is_dir() else None)
    context = {"dataset": cfg.get("dataset"), "method": cfg.get("method"), "run_seed": cfg.get("seed"),
               "direction": (cfg.get("data") or {}).get("direction") or "default", "reference_split": "test",
               "rescored": f"{run_dir} eval/{args.tag}"}
    return {"real": real, "fake": fake, "metrics": metrics, "labels": labels, "context": context,
            "protocol": ev.get("protocol"), "inception_weights": ev.get("inception_weights"),
            "seg_weights": ev.get("seg_weights"), "batch_size": ev.get("batch_size"), "seed": cfg.get("seed"),
            "tracking_uri": run_tracking_uri(run_dir, cfg, args.tracking_uri), "tags": tags, "reported": reported}


def run_tracking_uri(run_dir: Path, cfg: dict[str, Any], explicit: str | None) -> str | None:
    """Where a run is tracked: --tracking-uri, else what the run recorded (tracking.json, or its config's URI),
    else the sqlite file next to its runs root (where `bench run` was started), else $MLFLOW_TRACKING_URI."""
    from bench.runner import TRACKING_RECORD

    if explicit:
        return explicit
    record = run_dir / TRACKING_RECORD
    if record.is_file():
        uri = _read_json(record).get("tracking_uri")
        if uri:
            return uri
    base = _started_in(run_dir, cfg)
    configured = cfg.get("tracking_uri")
    if configured:
        if configured.startswith("sqlite:///") and not Path(configured[len("sqlite:///"):]).is_absolute() and base:
            return f"sqlite:///{base / configured[len('sqlite:///'):]}"
        return configured
    if base is not None and (base / "mlflow.db").is_file():
        return f"sqlite:///{base / 'mlflow.db'}"
    return os.environ.get("MLFLOW_TRACKING_URI")


def _started_in(run_dir: Path, cfg: dict[str, Any]) -> Path | None:
    """The folder `bench run` ran in: the run folder minus `<out>/<dataset>/<method>/<seed...>` (relative --out)."""
    out = Path(str(cfg.get("out") or "runs"))
    if out.is_absolute():
        return None
    tail = (*out.parts, str(cfg.get("dataset")), str(cfg.get("method")), run_dir.name)
    here = run_dir.resolve()
    if here.parts[-len(tail):] != tail:
        return None
    return Path(*here.parts[:-len(tail)])


def cmd_eval(args) -> int:
    """Entry point of `bench eval` (returns the exit code)."""
    run_dir = Path(args.run) if args.run else None
    if run_dir is not None and (args.real or args.fake):
        raise UsageError("give either --run or --real/--fake, not both")
    if run_dir is None and not args.fake:
        raise UsageError("give --real DIR --fake DIR (or --run RUN_DIR)")
    settings: dict[str, Any] = {"real": args.real, "fake": args.fake, "labels": args.labels, "context": {},
                                "metrics": _parse_metrics(args.metrics) or list(DEFAULT_METRICS)}
    if run_dir is not None:
        settings = _run_settings(run_dir, args)
    context = {**settings["context"], **_parse_context(args.context)}
    try:
        results = _score_from(settings, args, context)
    except BenchError as exc:
        partial = getattr(exc, "partial_results", None)
        if partial:
            print_table(partial)
            print(f"bench: computed {', '.join(partial)} before the error below", file=sys.stderr)
        raise
    doc = {"real": str(settings["real"]), "fake": str(settings["fake"]),
           "metrics": {k: v.to_dict() for k, v in results.items()}}
    print_table(results)
    if args.json:
        _write_json(Path(args.json), doc)
    if run_dir is not None:
        doc["tag"] = args.tag
        _write_json(run_dir / "metrics_rescored.json", doc)
        log_rescored_to_mlflow(run_dir, doc, settings["tracking_uri"], settings["tags"])
    return 0


def _score_from(settings: dict[str, Any], args, context: dict[str, str]):
    pick = lambda flag, key, default: flag if flag is not None else (settings.get(key) or default)  # noqa: E731
    return score(settings["real"], settings["fake"], settings["metrics"], labels=settings["labels"],
                 seg_weights=pick(args.seg_weights, "seg_weights", None), seg_arch=args.seg_arch,
                 seg_resolution=_parse_resolution(args.seg_resolution),
                 protocol=pick(args.protocol, "protocol", "legacy_pytorch"), device=args.device,
                 batch_size=pick(args.batch_size, "batch_size", 50), num_workers=args.num_workers,
                 seed=pick(args.seed, "seed", 0),
                 inception_weights=pick(args.inception_weights, "inception_weights", None),
                 cache_dir=args.cache_dir, cache=False if args.no_cache else None, context=context,
                 kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                 allow_mixed_sizes=args.allow_mixed_sizes, convert_rgb=args.convert_rgb)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    from bench.checkpoint import atomic_write_json

    atomic_write_json(path, doc)
    log.info("wrote %s", path)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def print_table(results: dict[str, Any], file=None) -> None:
    """A rich table: metric, value, ± std, N real/fake, protocol, notes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench eval")
    for col, justify in (("metric", "left"), ("value", "right"), ("± std", "right"), ("N real/fake", "right"),
                         ("protocol", "left"), ("notes", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for name, r in results.items():
        fp = r.fingerprint
        n = f"{fp.get('n_real', '—')}/{fp.get('n_fake', '—')}"
        proto = fp.get("protocol") or fp.get("resolution") or fp.get("matching") or ""
        note = r.unavailable or ("N < 2048: FID biased (see JSON)" if fp.get("warning") else "")
        table.add_row(name, _fmt(r.value), _fmt(r.std), n, str(proto), note)
    Console(file=file or sys.stdout).print(table)


def log_rescored_to_mlflow(run_dir: Path, doc: dict[str, Any], tracking_uri: str | None,
                           tags: list[str] | str, reported: dict[str, Any] | None = None) -> bool:
    """Log re-scored metrics to the run's own MLflow run; False when the run is not tracked anywhere known.

    Always as `rescored/<tag>/<metric>`. Where the run had no value for a metric (e.g. FID offline), the new one
    also fills `<tag>/<metric>` with its protocol tag, so `bench table` shows it; a value the run already had is
    left as it is (another protocol must not silently replace it).
    """
    import time

    from mlflow.entities import Metric

    from bench.runner import TRACKING_RECORD
    from bench.tracking import make_client, metric_key, missing_store, protocol_tags

    tags = [tags] if isinstance(tags, str) else list(tags)
    record = run_dir / TRACKING_RECORD
    id_file = run_dir / "mlflow_run_id.txt"
    run_id = (_read_json(record).get("run_id") if record.is_file() else None) or (
        id_file.read_text().strip() if id_file.is_file() else None)
    if not run_id or not tracking_uri:
        log.info("not logging to MLflow (%s)", "the run folder names no MLflow run" if not run_id else
                 "no tracking store recorded for the run; pass --tracking-uri")
        return False
    absent = missing_store(tracking_uri)
    if absent is not None:
        raise UsageError(f"the run's tracking store {absent} does not exist; pass --tracking-uri URI (the store the "
                         "run was tracked in)")
    client = make_client(tracking_uri)
    try:
        client.get_run(run_id)
    except Exception:
        raise UsageError(f"MLflow run {run_id} of {run_dir} is not in {tracking_uri}; "
                         "pass --tracking-uri URI") from None
    now = int(time.time() * 1000)
    metrics, filled, new_tags = [], [], {}
    for tag in tags:
        had = ((reported or {}).get(tag) or {}).get("metrics") or {}
        for name, r in doc["metrics"].items():
            if r["value"] is None:
                continue
            prefixes = [f"rescored/{tag}"]
            if (had.get(name) or {}).get("value") is None:
                prefixes.append(tag)
                filled.append(f"{tag}/{name}")
                if r.get("fingerprint"):
                    new_tags.update(protocol_tags(name, r["fingerprint"]))  # short flat tags, as the runner's
            for prefix in prefixes:
                key = metric_key(name, prefix)  # the unit in the key, like the run's own scores
                metrics.append(Metric(key, r["value"], now, 0))
                if r["std"] is not None:
                    metrics.append(Metric(f"{key}_std", r["std"], now, 0))
    try:
        client.log_batch(run_id, metrics=metrics)
        for key, value in new_tags.items():
            client.set_tag(run_id, key, value)
        for name in {f.split("/", 1)[1] for f in filled}:
            try:
                client.delete_tag(run_id, f"bench.unavailable.{name}")
            except Exception:  # the run never had that tag
                pass
        for tag in tags:
            client.log_dict(run_id, doc, f"metrics_rescored_{tag}.json")
    except Exception as exc:  # a deleted run: the JSON on disk is still written
        raise UsageError(f"cannot log to MLflow run {run_id} at {tracking_uri}: {exc}") from None
    note = f" (filled {', '.join(filled)}, which the run could not compute: `bench table` shows them)"
    log.info("logged %d metrics to MLflow run %s at %s%s", len(metrics), run_id, tracking_uri, note if filled else "")
    return True

"""`bench methods` (the registry) and `bench import` (an official checkpoint into a scored run)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    """Add `methods` and `import`."""
    p = sub.add_parser("methods", help="list registered methods, or print one method's official recipe",
                       description="Every registered method: kind, official code and licence, paper. With --recipe "
                                   "METHOD: what its `paper` preset runs per dataset, each value with its source.")
    p.add_argument("--recipe", metavar="METHOD", help="print the per-dataset recipe the `paper` preset uses, with "
                                                      "the official source of each value")
    p.add_argument("--dataset", help="with --recipe: only this dataset")
    p.set_defaults(func=cmd_methods)
    add_import_parser(sub)


def cmd_methods(args) -> int:
    """One block per method: name, kind, official code and licence, then the paper."""
    import methods as registry

    if getattr(args, "recipe", None):
        print(format_recipe(args.recipe, args.dataset))
        return 0

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


def format_recipe(method: str, dataset: str | None = None) -> str:
    """The `paper` preset of `method` per dataset: command, then every recipe value with its source.

    Values from the dataset's own script/config are marked `*`, settings of an every-dataset command `+`.
    """
    import methods as registry
    from bench.data import get_spec
    from methods.base import CODE_DEFAULTS
    from methods.recipes import DATASETS

    cls = registry.get(method)
    recipe = cls.RECIPE
    if recipe is None:
        return f"{method}: no recipe declared"
    if dataset is not None:
        get_spec(dataset)  # validates the name
    names = [dataset] if dataset else list(DATASETS)
    lines = [f"{method}: {cls.official_code}; `--preset paper` runs, per dataset (* = that dataset's own "
             f"script/config, + = the every-dataset command; the rest are code defaults, all of "
             f"`--preset {CODE_DEFAULTS}`):"]
    if recipe.test is not None:
        lines.append(f"  test: {recipe.test.value}  [{recipe.test.source}]")
    for name in names:
        lines.append("")
        lines.append(f"{name}: {recipe.command(name)}")
        own = recipe.for_dataset(name)
        if own is not None and own.note:
            lines.append(f"  note: {own.note}")
        cfg = cls.make_config("paper", dataset=name)
        settings = recipe.settings(name)
        width = max(len(k) for k in settings)
        for key in sorted(settings):
            setting, origin = settings[key]
            mark = {"dataset": "*", "all": "+"}.get(origin, " ")
            value = getattr(cfg, key)
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            lines.append(f"  {mark} {key:<{width}}  {shown:<14} {setting.source}")
    return "\n".join(lines)


def cmd_import(args) -> int:
    from bench.importing import import_checkpoint

    out = import_checkpoint(args.method, [Path(c) for c in args.checkpoint], net=args.net, out=Path(args.out),
                            dataset=args.dataset, data_root=args.data_root, direction=args.direction,
                            preset=args.preset, overrides=args.overrides, device=args.device or "auto",
                            inception_weights=args.inception_weights, tracking_uri=args.tracking_uri)
    print(out)
    return 0


IMPORT_EPILOG = """examples:
  bench import cut latest_net_G.pth --preset smoke                 check that a file loads (keys and shapes)
  bench import cut horse2zebra_cut.pth --dataset horse2zebra --data-root DIR
                  load, translate the test split, score it and track it: `bench table` shows it as
                  "CUT (official checkpoint)"; written to runs/imported/horse2zebra/cut/horse2zebra_cut/"""


def add_import_parser(sub) -> None:
    import argparse

    p = sub.add_parser("import", help="load official checkpoint files (and optionally evaluate them)",
                       description="Load official checkpoint files into bench's nets (strict key and shape check): "
                                   "single-net .pth files, NICE-GAN's <dataset>_params_latest.pt, MUNIT's "
                                   "gen_<iter>.pt / dis_<iter>.pt; with --dataset, score them on the test split and "
                                   "track it in MLflow (refused until every net the score needs is imported).",
                       epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", help="bench method name the checkpoint belongs to (see `bench methods`)")
    p.add_argument("checkpoint", nargs="+",
                   help="official file(s): latest_net_G.pth, latest_net_G_A.pth, NICE-GAN's "
                        "<dataset>_params_latest.pt, MUNIT's gen_<iter>.pt (+ dis_<iter>.pt); every net a score "
                        "needs must be among them")
    p.add_argument("--net", help="which net the file holds (default: from the file name, else the generator)")
    p.add_argument("--dataset", help="evaluate the imported generator on this dataset's test split (and track it)")
    p.add_argument("--data-root", help="dataset folder (default: $BENCH_DATA_ROOT/<name> or the cache)")
    p.add_argument("--direction", help="translation direction (default: the dataset's paper direction)")
    p.add_argument("--preset", default="paper",
                   help="architecture sizes of the checkpoint: paper (official, default) or smoke")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a method setting so the nets match the checkpoint (e.g. ngf=32); repeatable")
    p.add_argument("--out", "--output", dest="out", default="runs/imported",
                   help="root of the import folders: <out>/<dataset>/<method>/<file stem>/ (default: runs/imported)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--inception-weights", default=None, help="FID Inception weights file (or $BENCH_INCEPTION_WEIGHTS)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_import)

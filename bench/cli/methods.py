"""`bench methods` (the registry) and `bench import` (an official checkpoint into a scored run)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    """Add `methods` and `import`."""
    sub.add_parser("methods", help="list registered methods").set_defaults(func=cmd_methods)
    add_import_parser(sub)


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

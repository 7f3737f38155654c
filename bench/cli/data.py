"""`bench data list | get | check`: thin handlers over bench.data (parse, call, print)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table



def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `data` subcommand (list/get/check) to a `bench` subparsers object."""
    p = subparsers.add_parser("data", help="list, download and check datasets",
                              description="Datasets: list them, download one, or check a local copy.")
    sub = p.add_subparsers(dest="data_command", metavar="{list,get,check}")
    sub.required = True

    ls = sub.add_parser("list", help="table of datasets: layout, directions, local status")
    ls.set_defaults(func=cmd_list)

    get = sub.add_parser("get", help="download, verify, extract and count-check a dataset")
    get.add_argument("name", help="dataset name (see `bench data list`)")
    get.add_argument("--root", "--data-root", dest="root", default=None,
                     help="install here (default: $BENCH_DATA_ROOT/<name>, else $BENCH_CACHE_DIR/datasets/<name>)")
    get.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after extraction")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    get.set_defaults(func=cmd_get)

    chk = sub.add_parser("check", help="check a local dataset: layout, counts, decodability")
    chk.add_argument("name", help="dataset name")
    chk.add_argument("--root", "--data-root", dest="root", default=None, help="dataset folder to check")
    chk.add_argument("--quick", action="store_true", help="read image headers only (no full decode)")
    chk.add_argument("--strict", action="store_true", help="also fail when counts differ from the official ones")
    chk.set_defaults(func=cmd_check)
    return p


def _status(name: str) -> str:
    from bench.data import get_spec
    from bench.data.check import count_images
    from bench.data.download import read_manifest
    from bench.data.roots import find_root
    from bench.data.synthetic import VERSION, is_current

    spec = get_spec(name)
    root = find_root(name)
    if spec.layout == "generated":
        return f"generated ({VERSION}) at {root}" if root and is_current(root) else "built in (generated on first use)"
    if root is None:
        return "not downloaded" if spec.downloadable else "manual download (see `bench data get`)"
    rows, problems, _, _ = count_images(spec, root)
    if problems:
        return f"[red]broken[/red] at {root}"
    state = "complete" if all(r.status == "ok" or r.found < 0 for r in rows) else "partial"
    manifest = read_manifest(root)
    if manifest and state == "complete":
        verified = all(a.get("verified") for a in manifest.get("archives", []))
        state += ", sha256 verified" if verified else ", sha256 not verified"
    return f"{state} at {root}"


def _count_text(spec, split: str) -> str:
    counts = spec.counts[split]
    if spec.aligned and len(set(counts.values())) == 1:  # one aligned file per pair
        return str(next(iter(counts.values())))
    return "+".join(str(n) for n in counts.values())


def cmd_list(args: argparse.Namespace) -> int:
    """Print every dataset with its layout, domains, directions and local status."""
    from bench.data import dataset_names, get_spec

    table = Table(title="datasets")
    for col in ("name", "layout", "domains (A|B...)", "default direction", "train / test", "local"):
        table.add_column(col)
    for name in dataset_names():
        spec = get_spec(name)
        table.add_row(name, spec.layout + (" (pairs)" if spec.aligned else ""), "|".join(spec.domains),
                      spec.default_direction, " / ".join(_count_text(spec, s) for s in ("train", "test")),
                      _status(name))
    Console().print(table)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """Download and install a dataset; for Cityscapes print the manual preparation steps."""
    from bench.data import get_spec
    from bench.data.download import install
    from bench.data.roots import find_root, install_root

    spec = get_spec(args.name)
    console = Console()
    if spec.manual_instructions:
        present = find_root(args.name, args.root)
        if present is not None:
            console.print(f"{args.name} is present at {present}; run `bench data check {args.name}` to verify it.")
            return 0
        target = args.root or install_root(args.name)
        console.print(spec.manual_instructions.format(root=target), markup=False, highlight=False)
        return 1
    path = install(args.name, args.root, progress=not args.no_progress and sys.stderr.isatty(),
                   keep_archive=args.keep_archive)
    console.print(f"{args.name} ready at {path}")
    if spec.licence:
        console.print(f"terms: {spec.licence}", markup=False)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a dataset folder; exit 1 on problems (and with --strict on count differences)."""
    from rich.progress import Progress

    from bench.data.check import check_dataset

    console = Console()
    with Progress(transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("decoding" if not args.quick else "reading headers", total=None)
        report = check_dataset(args.name, args.root, decode=not args.quick,
                               on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=f"{args.name} at {report.root}")
    for col in ("split", "domain", "folder", "images", "official", "status"):
        table.add_column(col)
    for r in report.rows:
        table.add_row(r.split, r.domain, r.folder, str(max(r.found, 0)), str(r.expected or "-"), r.status)
    console.print(table)
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common(4))
    console.print(f"{report.decoded} image files {'decoded' if not args.quick else 'read'}; sizes: {sizes or '-'}",
                  markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    for problem in report.problems:
        console.print(f"problem: {problem}", style="red", markup=False)
    failed = not report.ok or (args.strict and not report.complete)
    console.print("[red]FAILED[/red]" if failed else ("[green]OK[/green]" if report.complete else
                                                         "[yellow]OK (partial)[/yellow]"))
    if not report.ok:
        from bench.errors import DataError

        more = f" (+{len(report.problems) - 1} more above)" if len(report.problems) > 1 else ""
        raise DataError(f"{args.name} at {report.root}: {report.problems[0]}{more}")
    if failed:
        from bench.errors import DataError

        differ = next(f"{r.split}/{r.domain}: {r.status}" for r in report.rows if r.status != "ok")
        raise DataError(f"{args.name} at {report.root}: counts differ from the official release ({differ}); "
                        "--strict wants the complete dataset (`bench data get`)")
    return 0

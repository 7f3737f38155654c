"""`bench doctor`: what bench sees here: its version, torch and accelerators, every weights file, the datasets,
the tracking store. Exit 1 when something named on the command line (or in a BENCH_* variable) is missing."""

from __future__ import annotations

import argparse
import os

EPILOG = """examples:
  bench doctor                                              report everything, exit 0
  bench doctor --inception-weights pt_inception-2015-12-05-6726825d.pth --dataset horse2zebra --data-root DIR
                                                            exit 1 unless those are there and verified"""

ENV_VARS = ("BENCH_INCEPTION_WEIGHTS", "BENCH_SEG_WEIGHTS", "BENCH_DATA_ROOT", "BENCH_CACHE_DIR", "BENCH_FIXTURES",
            "MLFLOW_TRACKING_URI", "TORCH_HOME")


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check the environment: versions, GPU, weights files, datasets, tracking",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inception-weights", default=None, metavar="FILE", help="FID Inception weights file to check")
    p.add_argument("--seg-weights", default=None, metavar="FILE", help="DRN-D-22 Cityscapes weights file to check")
    p.add_argument("--vgg-weights", default=None, metavar="FILE",
                   help="torchvision VGG16 file for FSeSim/LSeSim to check (as --set vgg_weights=FILE)")
    p.add_argument("--dataset", nargs="+", default=None, metavar="NAME", help="datasets that must be present")
    p.add_argument("--data-root", default=None, metavar="DIR", help="with one --dataset: its folder")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI to check (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_doctor)


def _versions() -> list[str]:
    import platform

    import torch

    from bench.cli import version_text

    lines = [f"{version_text()}; python {platform.python_version()} on {platform.platform(terse=True)}"]
    cuda = (f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): "
            + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            if torch.cuda.is_available() else
            f"CUDA not available ({'CPU-only build' if torch.version.cuda is None else 'no GPU found'})")
    mps = getattr(torch.backends, "mps", None)
    lines.append(f"torch {torch.__version__}; {cuda}; MPS {'available' if mps and mps.is_available() else 'no'}; "
                 f"{torch.get_num_threads()} CPU threads")
    if not torch.cuda.is_available():
        lines.append("no GPU: use --preset smoke for CPU-sized runs (the paper preset is sized for GPUs)")
    return lines


STATE_TEXT = {"ok": "ok", "unverified": "present", "mismatch": "WRONG", "missing": "missing", "error": "unreadable"}


def weights_lines(statuses) -> list[str]:
    """One paragraph per weights file: state, name, file, then where it is (and its sha256) or how to place it."""
    lines = []
    for s in statuses:
        head = f"[{STATE_TEXT[s.state]}] {s.spec.label} ({s.spec.file_name}), for {s.spec.what_for}"
        if s.path is not None:
            check = {"ok": " (verified)", "mismatch": " (does NOT match)"}.get(s.state, "")
            tail = f"{s.path} (from {s.source}), sha256 {s.sha256}{check}" + (f"; {s.detail}" if s.detail else "")
        else:
            tail = (f"{s.detail}; " if s.detail != s.spec.how_to_place else "") + f"to place it: {s.spec.how_to_place}"
        lines.append(f"{head}:\n    {tail}")
    return lines


def _datasets_table(names):
    from rich.table import Table

    from bench.cli.data import _status

    table = Table(title="datasets")
    table.add_column("name")
    table.add_column("found", overflow="fold")
    for name in names:
        try:
            table.add_row(name, _status(name))
        except Exception as exc:  # doctor reports, never crashes on one dataset
            table.add_row(name, f"error: {exc}")
    return table


def _tracking(uri: str | None) -> tuple[str, bool]:
    """(one line about the tracking store, reachable). A missing sqlite file is reported, never created."""
    from bench.tracking import absolute_uri, make_client, missing_store

    resolved = absolute_uri(uri)
    absent = missing_store(uri)
    if absent is not None:
        return f"tracking store {resolved}: not created yet (the first `bench run` here creates {absent})", False
    try:
        client = make_client(resolved)
        n = len(client.search_experiments(max_results=1000))
    except Exception as exc:
        return f"tracking store {resolved}: NOT reachable ({exc})", False
    return f"tracking store {resolved}: reachable, {n} experiment(s)", True


def cmd_doctor(args) -> int:
    from rich.console import Console

    from bench.data import dataset_names, get_spec
    from bench.data.roots import find_root
    from bench.weights_files import locate_all

    console = Console()
    for line in _versions():
        console.print(line, markup=False, highlight=False)
    explicit = {"inception": args.inception_weights, "drn": args.seg_weights, "vgg16": args.vgg_weights}
    statuses = locate_all(explicit)
    console.print("weights files:", markup=False, highlight=False)
    for line in weights_lines(statuses):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    problems = []
    env_named = {"inception": "BENCH_INCEPTION_WEIGHTS", "drn": "BENCH_SEG_WEIGHTS"}
    for s in statuses:
        asked = explicit.get(s.spec.key) or os.environ.get(env_named.get(s.spec.key, ""), "")
        if asked and not (s.found and s.state != "mismatch"):
            problems.append(f"{s.spec.file_name}: {s.state} ({s.detail or asked})")
        elif s.state == "mismatch":
            problems.append(f"{s.path}: {s.detail}")
    console.print(_datasets_table(dataset_names()))
    if args.data_root and (not args.dataset or len(args.dataset) != 1):
        from bench.errors import UsageError

        raise UsageError("--data-root goes with exactly one --dataset NAME")
    for name in args.dataset or []:
        spec = get_spec(name)
        if spec.layout != "generated" and find_root(name, args.data_root) is None:
            where = args.data_root or "the default places (bench data list)"
            problems.append(f"dataset {name}: not found at {where}; `bench data get {name}` or --data-root DIR")
    line, reachable = _tracking(args.tracking_uri)
    console.print(line, markup=False, highlight=False)
    if args.tracking_uri and not reachable:
        problems.append(line)
    console.print("environment: " + "  ".join(f"{v}={os.environ[v]}" for v in ENV_VARS if os.environ.get(v))
                  if any(os.environ.get(v) for v in ENV_VARS) else "environment: no BENCH_*/MLFLOW_*/TORCH_HOME set",
                  markup=False, highlight=False)
    for p in problems:
        console.print(f"problem: {p}", style="red", markup=False, highlight=False)
    return 1 if problems else 0

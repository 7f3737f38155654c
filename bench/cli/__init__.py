"""`bench` command line: one parser, one error-to-exit-code dispatch, one module per subcommand.

    bench run --methods all --dataset toy --preset smoke [--seeds 0 1] [--set key=value ...]
    bench eval | table | plot | study | data | import | methods | doctor

Each module in this package registers its subcommands (`register(subparsers)`) and keeps its handlers thin:
parse, call the library, print. `python -m bench.cli ...` is the same program as the `bench` script.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from bench.errors import BenchError

#: Modules that add subcommands, in the order `bench --help` lists them.
SUBCOMMAND_MODULES = ("bench.cli.run", "bench.cli.eval", "bench.cli.table", "bench.cli.study", "bench.cli.data",
                      "bench.cli.methods", "bench.cli.doctor")

#: Libraries whose INFO logging drowns bench's own.
NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git", "filelock", "httpx")


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    if not verbose:
        # MLflow installs its own stderr handler at import, at INFO ("Creating initial MLflow database tables"):
        # stderr is for bench's one-line errors. MLflow reads this variable when it is first imported.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)], force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Train, evaluate, track and tabulate image-to-image "
                                     "translation GANs under one protocol.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; a BenchError becomes one line on stderr and its exit code."""
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        # One line, always: a message that quotes a library's multi-line error is joined.
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"bench: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130

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
import sys

from bench.errors import BenchError

#: Modules that add subcommands, in the order `bench --help` lists them.
SUBCOMMAND_MODULES = ("bench.cli.run", "bench.cli.eval", "bench.cli.table", "bench.cli.study", "bench.cli.data",
                      "bench.cli.methods", "bench.cli.doctor")

#: Libraries whose INFO logging drowns bench's own.
NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git", "filelock", "httpx")


#: Log lines when stdout is not a terminal (a log file, a Slurm log): one line each, never wrapped.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal; plain `logging` lines (no wrapping, no padding) when stdout is a file."""
    import os

    from bench.progress import is_tty

    level = logging.DEBUG if verbose else logging.INFO
    # MLflow configures its own handler when first imported (after this); its INFO lines drown bench's.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    if is_tty(sys.stdout):
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        logging.basicConfig(level=level, handlers=[handler], force=True)
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
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130

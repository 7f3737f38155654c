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
                      "bench.cli.methods", "bench.cli.doctor", "bench.cli.reproduce",
                      "bench.cli.report")

#: Libraries whose INFO logging drowns bench's own.
NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git", "filelock", "httpx")


#: Log lines when stdout is not a terminal (a log file, a Slurm log): one line each, never wrapped.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal; plain `logging` lines (no wrapping, no padding) when stdout is a file."""
    from bench.progress import is_tty

    level = logging.DEBUG if verbose else logging.INFO
    # MLflow configures its own handler when first imported (after this) at INFO ("Creating initial MLflow
    # database tables"); its INFO lines drown bench's, and stderr is for bench's one-line errors.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    if is_tty(sys.stdout):
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # library warnings (matplotlib, optuna) go to the log, not stderr
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


EXAMPLES = """examples:
  bench run --methods all --dataset toy --preset smoke     train + score every method on built-in data (CPU minutes)
  bench run --methods cut --dataset horse2zebra --data-root DIR --preset paper --seeds 0 1 2
  bench eval --real DIR --fake DIR --metrics fid,kid,swd   score any two image folders
  bench table --metric fid,kid --published                 paper-style table of the tracked runs
  bench plot --dataset toy                                 curves and qualitative grids (PNG + PDF)
  bench doctor                                             versions, weights files, datasets, tracking store

`bench COMMAND --help` shows each command's options."""


def version_text() -> str:
    """`bench X.Y.Z (git <commit>)`: the installed version and the commit of the code that runs."""
    from bench import __version__
    from bench.runner import git_commit

    return f"bench {__version__} (git {git_commit()})"


class _Version(argparse.Action):
    """`--version`: the text is computed only when asked (it runs git)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """argparse accepts `--method` for `--methods` unless told not to; every (sub)parser is told."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Train, evaluate, track and tabulate image-to-image "
                                     "translation GANs under one protocol.", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="print bench's version and git commit, then exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    _no_abbreviations(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # handlers quote the user's own command in their advice
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

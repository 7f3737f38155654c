"""A run matrix: one `RunRequest` per (method, seed), with the `bench run` arguments that run exactly it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import RunConfig

#: `bench run` options every run of a matrix shares, forwarded to each run's own command (flag, attribute).
FORWARDED = (("--dataset", "dataset"), ("--preset", "preset"), ("--data-root", "data_root"),
             ("--direction", "direction"), ("--out", "out"), ("--tracking-uri", "tracking_uri"),
             ("--inception-weights", "inception_weights"), ("--seg-weights", "seg_weights"))
FORWARDED_SWITCHES = (("--resume", "resume"), ("--allow-thread-change", "allow_thread_change"))


@dataclass(frozen=True)
class RunRequest:
    """One run of the matrix: its resolved config and the `bench run` arguments that run only it."""

    cfg: RunConfig
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.cfg.run_name

    @property
    def log_path(self) -> Path:
        """Where a launcher writes the run's output: beside its run folder (`seed0.log`)."""
        return self.cfg.run_dir.with_name(self.cfg.run_dir.name + ".log")

    def run_args(self, device: str | None = None) -> list[str]:
        """The `bench run` arguments of this run (`device` adds --device, e.g. cpu or cuda)."""
        return [*self.argv, *(["--device", device] if device is not None else [])]

    def command(self, device: str | None = None) -> list[str]:
        """`python -m bench.cli run ...` for this run."""
        return [sys.executable, "-m", "bench.cli", "run", *self.run_args(device)]


def run_argv(args: argparse.Namespace, method: str, seed: int) -> tuple[str, ...]:
    """The `bench run` arguments of one (method, seed) of the matrix `args` describes (no progress bar).

    The device is not among them: each launcher gives it (`RunRequest.command(device)`)."""
    argv = ["--methods", method, "--seeds", str(seed)]
    for flag, attr in FORWARDED:
        value = getattr(args, attr, None)
        if value is not None:
            argv += [flag, str(value)]
    for item in getattr(args, "overrides", None) or []:
        argv += ["--set", item]
    for flag, attr in FORWARDED_SWITCHES:
        if getattr(args, attr, False):
            argv.append(flag)
    return (*argv, "--no-progress")


def absolute(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with the output folder and a sqlite tracking file made absolute (jobs may start elsewhere)."""
    from bench.tracking import resolve_tracking_uri, sqlite_path

    out = replace_ns(args, out=str(Path(args.out).resolve()))
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None:
        out = replace_ns(out, tracking_uri=f"sqlite:///{db.resolve()}")
    for attr in ("data_root", "inception_weights", "seg_weights"):
        value = getattr(out, attr, None)
        if value and Path(value).exists():
            out = replace_ns(out, **{attr: str(Path(value).resolve())})
    return out


def replace_ns(ns: argparse.Namespace, **changes) -> argparse.Namespace:
    new = argparse.Namespace(**vars(ns))
    for k, v in changes.items():
        setattr(new, k, v)
    return new

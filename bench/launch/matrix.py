"""A run matrix: one `RunRequest` per (method, seed), with the `bench run` arguments that run exactly it.

Each launched run is a `bench run` of its own, so it goes through the same run lifecycle (bench.run_folder)
as a run of a sequential `bench run`. `triage` tells beforehand, as that lifecycle would, which runs need no
process: finished runs with the same settings (kept) and folders the command may not touch (refused, with
the user's own command that fixes it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import RunConfig

log = logging.getLogger(__name__)

#: `bench run` options every run of a matrix shares, forwarded to each run's own command (flag, attribute).
FORWARDED = (("--dataset", "dataset"), ("--preset", "preset"), ("--data-root", "data_root"),
             ("--direction", "direction"), ("--out", "out"), ("--tracking-uri", "tracking_uri"),
             ("--inception-weights", "inception_weights"), ("--seg-weights", "seg_weights"),
             ("--progress-interval", "progress_interval"))
FORWARDED_SWITCHES = (("--resume", "resume"), ("--restart", "restart"), ("--allow-thread-change", "allow_thread_change"),
                      ("--no-progress", "no_progress"))


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
    """The `bench run` arguments of one (method, seed) of the matrix `args` describes.

    The device is not among them: each launcher gives it (`RunRequest.command(device)`). Of the `--set`
    items, those of `method` are forwarded (`cut.x=1` only to cut's runs, a bare `x=1` to methods that have
    `x`), as `bench run --methods all` applies them. A run's stdout is its log file: with progress on, it gets
    a plain progress line every --progress-interval seconds."""
    argv = ["--methods", method, "--seeds", str(seed)]
    for flag, attr in FORWARDED:
        value = getattr(args, attr, None)
        if value is not None:
            argv += [flag, str(value)]
    for item in own_overrides(getattr(args, "overrides", None) or [], method):
        argv += ["--set", item]
    for flag, attr in FORWARDED_SWITCHES:
        if getattr(args, attr, False):
            argv.append(flag)
    return tuple(argv)


def own_overrides(items: list[str], method: str) -> list[str]:
    """The `--set KEY=VALUE` items that apply to `method`: unscoped section keys (train.x), its own scoped
    keys (cut.x), and bare method keys it has."""
    import dataclasses

    import methods as registry

    names = set(registry.names())
    fields = {f.name for f in dataclasses.fields(registry.get(method).Config)}
    out = []
    for item in items:
        key = item.partition("=")[0].strip()
        head, dot, _ = key.partition(".")
        if (dot and head in names and head != method) or (not dot and key not in fields):
            continue
        out.append(item)
    return out


def triage(requests: list[RunRequest], *, resume: bool = False, restart: bool = False,
           allow_thread_change: bool = False, fix_command=None) -> tuple[list[RunRequest], dict]:
    """(the requests to launch, {run name: RunResult} of those that need no process).

    A finished run with the same settings is kept (`RunResult.kept`); a folder the command may not continue
    or overwrite, or a refused thread change, is a failed result with the one-line reason (and, for a folder
    conflict, `fix_command(flag)`: the user's command with the flag that fixes it). Reads only (with
    `restart` every run is launched: each moves its own folder aside).
    """
    from bench import threads
    from bench.errors import BenchError
    from bench.run_folder import RunFolderConflict, decide
    from bench.runner import RunResult, recorded_result

    if restart:
        return list(requests), {}
    launch, known = [], {}
    for r in requests:
        try:
            cfg = threads.settle(r.cfg, resume=resume, allow_change=allow_thread_change)[0]
            decision = decide(cfg, resume=resume)
        except BenchError as exc:
            msg = str(exc)
            if isinstance(exc, RunFolderConflict) and exc.fixes and fix_command is not None:
                msg += ". Command: " + " or ".join(f"`{fix_command(f)}`" for f in exc.fixes)
            known[r.name] = RunResult(r.cfg.method, r.cfg.dataset, r.cfg.seed, "failed", r.cfg.run_dir,
                                      error=f"{type(exc).__name__}: {msg}")
            log.error("%s not run: %s", r.name, msg)
            continue
        if decision.action == "keep":
            log.info("%s already finished with these settings; kept as it is (--restart to train it again)",
                     cfg.run_dir)
            known[r.name] = recorded_result(cfg, kept=True)
        else:
            launch.append(r)
    return launch, known


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

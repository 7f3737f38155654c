"""Custom objectives: a study trial that runs a function instead of training a method.

A spec's `method` normally names a registered method, and each seed of a trial is a `bench.runner.run_one`
training run. A name starting with "_" names a custom objective instead: a function

    objective(seed, overrides, trial_number, on_eval) -> {"last": {metric: value, "epoch": n}, "best": {...}}

that calls `on_eval(epoch, {metric: value})` for each intermediate score (the pruner sees them) and returns the
final scores. The study machinery's own tests use one (a quadratic of the parameters that trains nothing) so
grids, pruning, retries and many workers are tested in seconds; nothing of the kind ships with bench.

Register one with `register_objective(name, fn, steps=...)`, in a module that `$BENCH_STUDY_PLUGINS` names
(comma-separated module names or .py file paths). The variable is read whenever a name is looked up, so study
worker subprocesses, which inherit the environment, load the same objectives.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.errors import ConfigError

PLUGINS_ENV = "BENCH_STUDY_PLUGINS"
PREFIX = "_"

OnEval = Callable[[int, Mapping[str, float]], None]


@dataclass(frozen=True)
class Objective:
    """A registered custom objective."""

    name: str
    run: Callable[[int, Mapping[str, Any], int, OnEval], dict[str, Any]]
    #: Evaluation steps one seed reports, from the trial's overrides (seeds report on consecutive step ranges).
    steps: Callable[[Mapping[str, Any]], int]


OBJECTIVES: dict[str, Objective] = {}
_imported: set[str] = set()


def register_objective(name: str, run: Callable[..., dict[str, Any]],
                       steps: Callable[[Mapping[str, Any]], int] = lambda overrides: 1) -> None:
    """Make `name` (starting with "_", so it never hides a method) run `run` for each seed of a trial."""
    if not isinstance(name, str) or not name.startswith(PREFIX) or len(name) < 2:
        raise ValueError(f"custom objective names start with {PREFIX!r} (got {name!r}): method names never do")
    if name in OBJECTIVES:
        raise ValueError(f"custom objective {name!r} is already registered ({OBJECTIVES[name].run!r})")
    OBJECTIVES[name] = Objective(name, run, steps)


def load_plugins() -> None:
    """Import every module named in $BENCH_STUDY_PLUGINS that is not imported yet."""
    for item in filter(None, (p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(","))):
        key = str(Path(item).resolve()) if item.endswith(".py") else item
        if key in _imported:
            continue
        _imported.add(key)
        try:
            if item.endswith(".py"):
                spec = importlib.util.spec_from_file_location(f"bench_study_plugin_{Path(item).stem}", key)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {key}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except (ImportError, OSError) as exc:
            _imported.discard(key)
            raise ConfigError(f"${PLUGINS_ENV}={item}: cannot import it ({exc})") from None


def is_objective(name: str) -> bool:
    """Whether `name` is reserved for a custom objective (starts with "_")."""
    return name.startswith(PREFIX)


def get_objective(name: str) -> Objective:
    """The custom objective `name` (ConfigError saying how to register one otherwise)."""
    load_plugins()
    if name not in OBJECTIVES:
        known = ", ".join(OBJECTIVES) or "none registered"
        raise ConfigError(f"method {name!r}: names starting with {PREFIX!r} are reserved for custom objectives "
                          f"registered by a module in ${PLUGINS_ENV} (bench.studies.objectives); known: {known}")
    return OBJECTIVES[name]

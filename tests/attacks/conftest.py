"""Fixtures of the attack suite: the CLI caller and tiny runs in known states, built once per session.

Each test gets its own copy (run folders + MLflow database) in its working directory, so tampering with it
never leaks into another case.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from attack_kit import call, tiny_run_argv

RUN = Path("runs/toy/cut/seed0")


@pytest.fixture
def bench(capsys):
    """`bench(*argv) -> Outcome`: the CLI in this process, with exit code and captured streams."""
    return lambda *argv: call(capsys, *argv)


def _build(base: Path, kind: str) -> Path:
    """A tiny CUT run under `base` in state `kind`: finished | eval_failed (the final evaluation) | quick_eval_failed
    (the in-training evaluation of epoch 2, after the epoch-1 checkpoint) | interrupted (KeyboardInterrupt)."""
    from bench.cli import main
    from bench.errors import BenchError

    base.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("BENCH_CACHE_DIR", str(base / "cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        if kind == "eval_failed":
            from bench.evaluation import Evaluator

            def fail(self, method, tag):
                raise BenchError("simulated failure of the final evaluation")

            mp.setattr(Evaluator, "full", fail)
        elif kind == "quick_eval_failed":
            from bench.evaluation import Evaluator

            original_quick, evals = Evaluator.quick, []

            def quick(self, *args, **kwargs):
                evals.append(1)
                if len(evals) == 2:
                    raise BenchError("simulated failure of the in-training evaluation")
                return original_quick(self, *args, **kwargs)

            mp.setattr(Evaluator, "quick", quick)
        elif kind == "interrupted":
            from methods.cut import CUT

            original, calls = CUT.train_step, []

            def step(self, batch):
                calls.append(1)
                if len(calls) == 4:  # 2nd batch of epoch 2: iteration 3 is logged but not checkpointed
                    raise KeyboardInterrupt
                return original(self, batch)

            mp.setattr(CUT, "train_step", step)
        code = main(tiny_run_argv())
        expected = {"finished": 0, "eval_failed": 1, "quick_eval_failed": 1, "interrupted": 130}[kind]
        assert code == expected, f"building the {kind} run gave exit {code}"
    shutil.rmtree(base / "cache", ignore_errors=True)
    return base


@pytest.fixture(scope="session")
def run_bases(tmp_path_factory):
    """Lazily built run templates, one per state, shared by every module."""
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = _build(tmp_path_factory.mktemp("base") / kind, kind)
        return built[kind]

    return get


@pytest.fixture
def run_copy(run_bases, tmp_path):
    """`run_copy(kind) -> run folder`: a private copy of a template run (and its MLflow db) in the cwd.

    The folder is returned relative to the cwd, as a user would type it (and as messages name it)."""
    def make(kind: str = "finished") -> Path:
        base = run_bases(kind)
        for name in ("runs", "mlflow.db"):
            src = base / name
            if src.is_dir():
                shutil.copytree(src, tmp_path / name)
            else:
                shutil.copy2(src, tmp_path / name)
        return RUN

    return make

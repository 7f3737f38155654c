"""`bench run --launcher slurm` through submitit's local executor: one task per run, same weights as a run in
this process, `--status`, and a preempted task requeued from its last.pt."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.cli import main

submitit = pytest.importorskip("submitit", reason="submitit is the [slurm] extra")

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "n_epochs": "1", "n_epochs_decay": "1"}


def _argv(out: Path, uri: str, seeds=(0, 1), **extra) -> list[str]:
    argv = ["run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke", "--seeds", *map(str, seeds),
            "--out", str(out), "--tracking-uri", uri, "--no-progress"]
    for k, v in {**FAST, **extra}.items():
        argv += ["--set", f"{k}={v}"]
    return argv


LOCAL = ["--launcher", "slurm", "--cluster", "local", "--gpus-per-run", "0", "--timeout-min", "30"]


def _wait(paths, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline and not all(p.is_file() for p in paths):
        time.sleep(0.5)
    return all(p.is_file() for p in paths)


def _same(a: Path, b: Path) -> None:
    na = load_checkpoint(a / "checkpoints" / "last.pt")["method"]["nets"]
    nb = load_checkpoint(b / "checkpoints" / "last.pt")["method"]["nets"]
    for net in na:
        for k in na[net]:
            assert torch.equal(na[net][k], nb[net][k]), f"{net}.{k}"


def test_local_executor_tasks_give_the_runs_weights_and_status(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(_argv(tmp_path / "ref", uri)) == 0
    assert main(_argv(tmp_path / "sub", uri) + LOCAL) == 0
    assert "cut/seed0: job" in capsys.readouterr().out
    done = [tmp_path / "sub/toy/cut" / f"seed{s}" / "metrics.json" for s in (0, 1)]
    assert _wait(done), (tmp_path / "sub/slurm/runs.json").read_text()
    for s in (0, 1):
        _same(tmp_path / "ref/toy/cut" / f"seed{s}", tmp_path / "sub/toy/cut" / f"seed{s}")
    record = json.loads((tmp_path / "sub/slurm/runs.json").read_text())
    assert sorted(record) == ["cut/seed0", "cut/seed1"]
    assert main(_argv(tmp_path / "sub", uri) + LOCAL + ["--status"]) == 0
    out = capsys.readouterr().out
    assert "2 finished" in out and "cut/seed1" in out
    # A run never submitted shows as such, and --status then exits 1.
    assert main(_argv(tmp_path / "sub", uri, seeds=(0, 5)) + LOCAL + ["--status"]) == 1
    assert "not submitted" in capsys.readouterr().out


def _task_pid(controller: int) -> int | None:
    try:
        children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@pytest.mark.slow
def test_a_preempted_task_is_requeued_and_continues_from_last_pt(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    long = {"n_epochs": "3", "n_epochs_decay": "3", "train.save_every": "1"}
    assert main(_argv(tmp_path / "ref", uri, seeds=(0,), **long)) == 0
    assert main(_argv(tmp_path / "sub", uri, seeds=(0,), **long) + LOCAL) == 0
    capsys.readouterr()
    record = json.loads((tmp_path / "sub/slurm/runs.json").read_text())["cut/seed0"]
    run_dir = tmp_path / "sub/toy/cut/seed0"
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            loop = load_checkpoint(last)["loop"] if last.is_file() else None
        except Exception:
            loop = None
        if loop and 3 <= loop["iteration"] and not loop["finished"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the task never reached a mid-run checkpoint")
    pid = _task_pid(int(record["job_id"]))
    assert pid
    os.kill(pid, signal.SIGUSR2)  # what Slurm sends before a preemption (submitit's signal)
    assert _wait([run_dir / "metrics.json"], timeout=900), Path(record["log"]).read_text()[-3000:]
    log = Path(record["log"]).read_text() + Path(record["log"]).with_suffix(".out").read_text()
    assert "preempted" in log and "Requeued" in log, log[-3000:]
    assert "resumed" in log, log[-3000:]
    _same(tmp_path / "ref/toy/cut/seed0", run_dir)


def test_a_requeued_task_resumes_and_never_restarts_again():
    from bench.launch.slurm import RunTask

    task = RunTask(["--methods", "cut", "--seeds", "0", "--restart"], "cpu")
    again = task.checkpoint().function
    assert again.argv == ["--methods", "cut", "--seeds", "0", "--resume"] and again.device == "cpu"
    assert again.checkpoint().function.argv == again.argv

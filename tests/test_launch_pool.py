"""The local pool (`bench run --workers N`): one process per run, same weights as in a row, failures reported,
kill -9 then --resume finishes exactly the unfinished runs, Ctrl-C stops cleanly, a tracking server works."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.errors import UsageError
from bench.launch.pool import CPU, Slot, make_slots, parse_devices
from test_tracking import mlflow_server  # noqa: F401  (the `mlflow server` on 127.0.0.1 fixture)

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "n_epochs": "1", "n_epochs_decay": "1"}


def _argv(out: Path, uri: str, methods=("cut",), seeds=(0, 1), **extra) -> list[str]:
    argv = ["run", "--methods", *methods, "--dataset", "toy", "--preset", "smoke", "--seeds", *map(str, seeds),
            "--out", str(out), "--tracking-uri", uri, "--no-progress"]
    for k, v in {**FAST, **extra}.items():
        argv += ["--set", f"{k}={v}"]
    return argv


def _bench(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, timeout=900, **kw)


def _nets(run_dir: Path):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]["nets"]


def _assert_same(a: Path, b: Path) -> None:
    na, nb = _nets(a), _nets(b)
    assert na.keys() == nb.keys()
    for net in na:
        for k in na[net]:
            assert torch.equal(na[net][k], nb[net][k]), f"{a} vs {b}: {net}.{k}"


def test_slots_spread_runs_over_devices():
    assert make_slots(["0", "1"], 2, 8) == [Slot("0", 0), Slot("1", 0), Slot("0", 1), Slot("1", 1)]
    assert make_slots(["0", "1"], None, 8) == [Slot("0", 0), Slot("1", 0)]  # one run per GPU by default
    assert make_slots([CPU], None, 2) == [Slot(CPU, 0), Slot(CPU, 1)]  # on the CPU, --workers runs
    assert make_slots(["0", "1", "2"], 1, 2) == [Slot("0", 0), Slot("1", 0)]
    assert Slot("1", 0).env() == {"CUDA_VISIBLE_DEVICES": "1"} and Slot("1", 0).run_device == "cuda"
    assert Slot(CPU, 0).env() == {"CUDA_VISIBLE_DEVICES": ""} and Slot(CPU, 0).run_device == "cpu"
    assert parse_devices("cpu") == [CPU] and parse_devices("0,1") == ["0", "1"] and parse_devices(None, "cuda:3") == ["3"]
    for bad in ("0,0", "gpu", "0,cpu"):
        with pytest.raises(UsageError, match="--devices"):
            parse_devices(bad)
    with pytest.raises(UsageError, match="--workers"):
        make_slots([CPU], None, 0)


def test_pool_gives_the_same_weights_as_one_after_the_other_and_reports_a_failure(tmp_path):
    from bench.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(_argv(tmp_path / "seq", uri)) == 0  # one after the other, in this process
    # seed 2's folder holds a started run of the same settings whose last.pt is damaged: that run fails in its
    # process (--resume), the other two go on.
    blocked = tmp_path / "pool" / "toy" / "cut" / "seed2"
    (blocked / "checkpoints").mkdir(parents=True)
    (blocked / "config.json").write_text((tmp_path / "seq/toy/cut/seed0/config.json").read_text())
    (blocked / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    pool = _bench(_argv(tmp_path / "pool", uri, seeds=(0, 1, 2)) + ["--workers", "2", "--devices", "cpu", "--resume"],
                  cwd=tmp_path)
    assert pool.returncode == 1, pool.stdout[-2000:] + pool.stderr[-2000:]
    for seed in (0, 1):
        _assert_same(tmp_path / "seq/toy/cut" / f"seed{seed}", tmp_path / "pool/toy/cut" / f"seed{seed}")
        cfg = json.loads((tmp_path / "pool/toy/cut" / f"seed{seed}" / "config.json").read_text())
        assert cfg["train"]["threads"] == 1  # 2 cores split between 2 workers, and the smoke rule
    out = (pool.stdout + pool.stderr).replace("\n", " ")
    assert re.search(r"cut/seed2 failed \(exit 1\): .*last\.pt", out), out[-3000:]
    summary = pool.stdout[pool.stdout.index("bench run summary"):]
    assert summary.count("finished") == 2 and "failed" in summary


def test_the_pool_keeps_finished_runs_and_refuses_other_settings_before_starting_any_process(tmp_path):
    """As for one run (bench.run_folder): nothing is launched for a kept or a refused folder."""
    import shutil

    from bench.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(_argv(tmp_path / "runs", uri, seeds=(0,))) == 0
    other = tmp_path / "runs/toy/cut/seed1"
    shutil.copytree(tmp_path / "runs/toy/cut/seed0", other)
    doc = json.loads((other / "config.json").read_text())
    doc["method_cfg"]["lambda_NCE"] = 5.0
    (other / "config.json").write_text(json.dumps(doc))
    pool = _bench(_argv(tmp_path / "runs", uri, seeds=(0, 1)) + ["--workers", "2", "--devices", "cpu"], cwd=tmp_path)
    assert pool.returncode == 1, pool.stdout[-2000:] + pool.stderr[-2000:]
    out = (pool.stdout + pool.stderr).replace("\n", " ")
    assert "started cut" not in out  # no process for either run
    assert re.search(r"cut/seed1 not run: .*other settings.*lambda_NCE.*Command: `bench run .*--restart`", out), out
    summary = pool.stdout[pool.stdout.index("bench run summary"):]
    assert "finished (kept)" in summary and "failed" in summary
    assert not (tmp_path / "runs/toy/cut/seed0.log").exists()


def _pids_in(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+),", text)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_of_the_pool_then_resume_finishes_exactly_the_unfinished_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "pool"
    argv = _argv(out, uri, methods=("cut", "cyclegan"), seeds=(0, 1), **{"train.save_every": "2",
                                                                       "n_epochs": "2", "n_epochs_decay": "2"})
    log = open(tmp_path / "pool.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv, "--workers", "2", "--devices", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    finished = lambda: sorted(p.parent.relative_to(out) for p in out.glob("toy/*/seed*/metrics.json"))  # noqa: E731
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not finished():
        time.sleep(0.2)
    done_before = finished()
    assert done_before, (tmp_path / "pool.log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    pids = _pids_in((tmp_path / "pool.log").read_text())
    time.sleep(2)
    assert pids and not any(_alive(p) for p in pids), "runs outlived their killed pool"
    stamps = {d: (out / d / "metrics.json").stat().st_mtime_ns for d in done_before}
    assert len(done_before) < 4, "everything finished before the kill; nothing left to resume"

    resumed = _bench(argv + ["--workers", "2", "--devices", "cpu", "--resume"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert len(finished()) == 4
    for d in done_before:  # kept as they were, not re-run
        assert (out / d / "metrics.json").stat().st_mtime_ns == stamps[d]
    ref = _bench(argv[:argv.index("--out")] + ["--out", str(tmp_path / "ref")] + argv[argv.index("--out") + 2:],
                 cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    for d in finished():
        _assert_same(tmp_path / "ref" / d, out / d)


@pytest.mark.slow
def test_ctrl_c_stops_every_run_cleanly_and_resume_continues(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = _argv(tmp_path / "pool", uri, seeds=(0, 1, 2), **{"train.save_every": "2", "n_epochs": "3"})
    log = open(tmp_path / "pool.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv, "--workers", "2", "--devices", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.time() + 600
    while time.time() < deadline and not list((tmp_path / "pool").glob("toy/cut/seed*/checkpoints/last.pt")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    log.close()
    text = (tmp_path / "pool.log").read_text()
    assert "interrupted" in text
    assert not any(_alive(p) for p in _pids_in(text))
    assert not (tmp_path / "pool/toy/cut/seed2/config.json").exists()  # never started after the interrupt
    client = mlflow.MlflowClient(uri)
    statuses = {r.info.run_name: r.info.status for r in client.search_runs(
        [client.get_experiment_by_name("toy").experiment_id])}
    assert statuses and all(s == "KILLED" for s in statuses.values()), statuses
    resumed = _bench(argv + ["--workers", "2", "--devices", "cpu", "--resume"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(list((tmp_path / "pool").glob("toy/cut/seed*/metrics.json"))) == 3


@pytest.mark.slow
def test_two_pool_workers_against_an_mlflow_tracking_server(mlflow_server, tmp_path):  # noqa: F811
    result = _bench(_argv(tmp_path / "srv", mlflow_server, methods=("cut", "fastcut"), seeds=(0,),
                          n_epochs="1", n_epochs_decay="0") + ["--workers", "2", "--devices", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id],
                              filter_string="tags.`bench.run_dir` LIKE '%srv%'")
    assert sorted(r.data.tags["bench.method"] for r in runs) == ["cut", "fastcut"]
    assert all(r.info.status == "FINISHED" and "last/swd_x1e3" in r.data.metrics for r in runs)


def test_each_run_gets_its_own_command_line():
    import argparse

    from bench.launch.matrix import run_argv

    args = argparse.Namespace(dataset="toy", preset="smoke", out="runs", tracking_uri=None, data_root=None,
                              direction=None, inception_weights=None, seg_weights=None, progress_interval=5.0,
                              overrides=["cut.lambda_NCE=2", "lambda_NCE=3", "train.eval_n=2", "lambda_A=7",
                                         "cyclegan.pool_size=5"],
                              resume=False, restart=True, allow_thread_change=False, no_progress=False)
    cut = run_argv(args, "cut", 1)
    assert cut[:4] == ("--methods", "cut", "--seeds", "1")
    sets = [cut[i + 1] for i, a in enumerate(cut) if a == "--set"]
    assert sets == ["cut.lambda_NCE=2", "lambda_NCE=3", "train.eval_n=2"]  # cyclegan's keys are not cut's
    assert "--restart" in cut and "--resume" not in cut and "--no-progress" not in cut
    assert cut[cut.index("--progress-interval") + 1] == "5.0"  # a run's log gets plain progress lines
    cyc = run_argv(args, "cyclegan", 0)
    assert [cyc[i + 1] for i, a in enumerate(cyc) if a == "--set"] == ["train.eval_n=2", "lambda_A=7",
                                                                       "cyclegan.pool_size=5"]


def test_a_run_forked_after_its_pool_died_exits_at_once(tmp_path):
    """kill -9 of the pool while it starts a run: the server forks the run and exits before the run is tied to
    it by the parent-death signal; the run must not then train on its own (it did: a whole run finished)."""
    import multiprocessing

    from bench.launch.pool import _run_child, pid_alive

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not pid_alive(gone.pid) and pid_alive(os.getpid())
    log = tmp_path / "run.log"
    child = multiprocessing.get_context("fork").Process(target=_run_child, args=(["--help"], {}, str(log), gone.pid))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 137 and not log.exists()

"""The training loop end to end on the built-in toy data: determinism, resume after SIGKILL, failure marking."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.runner import build_run_config, run_one

# Tiny, fast and metric-weights-free (SWD needs no Inception weights).
FAST = {"data.max_train": "8", "train.eval_n": "4", "eval.n_test": "4", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "train.log_every": "2"}


def _run(tmp_path, out, seed=0, method="cut", **extra):
    cfg = build_run_config(method, "toy", seed, "smoke", {**FAST, **extra}, out=str(tmp_path / out),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return cfg, run_one(cfg)


def _nets(path):
    return load_checkpoint(path)["method"]["nets"]


def _assert_same_nets(a, b):
    assert a.keys() == b.keys()
    for net in a:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs"


def test_same_seed_gives_bitwise_identical_checkpoints_and_metrics(tmp_path):
    cfg1, r1 = _run(tmp_path, "a")
    cfg2, r2 = _run(tmp_path, "b")
    assert r1.status == r2.status == "finished"
    _assert_same_nets(_nets(cfg1.run_dir / "checkpoints" / "last.pt"), _nets(cfg2.run_dir / "checkpoints" / "last.pt"))
    m1 = json.loads((cfg1.run_dir / "metrics.json").read_text())
    m2 = json.loads((cfg2.run_dir / "metrics.json").read_text())
    assert m1["last"]["metrics"]["swd"]["value"] == m2["last"]["metrics"]["swd"]["value"]
    assert m1["history"] == m2["history"]
    _, r3 = _run(tmp_path, "c", seed=1)
    assert r3.metrics["last"]["swd"] != r1.metrics["last"]["swd"]


def test_run_dir_layout_and_best_last(tmp_path):
    cfg, r = _run(tmp_path, "layout", method="cyclegan")
    d = cfg.run_dir
    for rel in ("config.json", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "history.json",
                "mlflow_run_id.txt"):
        assert (d / rel).is_file(), rel
    assert list((d / "samples").glob("epoch_*.png"))
    doc = json.loads((d / "metrics.json").read_text())
    assert doc["last"]["epoch"] == 2 and 1 <= doc["best"]["epoch"] <= 2
    assert doc["last"]["metrics"]["swd"]["fingerprint"]
    assert "reverse" in doc  # CycleGAN is two-way: scored B->A too
    assert len(list((d / "eval" / "last" / "fake").glob("*.png"))) == 4
    # A plain rerun (and --resume) of a finished run with the same settings keeps it: same metrics, no new
    # training or evaluation, reported as kept.
    stamp = (d / "metrics.json").stat().st_mtime_ns
    for resume in (False, True):
        again = run_one(cfg, resume=resume)
        assert again.status == "finished" and again.kept and again.metrics == r.metrics
        assert again.mlflow_run_id == r.mlflow_run_id and (d / "metrics.json").stat().st_mtime_ns == stamp


def _cli(tmp_path, out, *extra):
    sets = []
    for k, v in {**FAST, "n_epochs": "2", "n_epochs_decay": "2", "train.save_every": "2"}.items():
        sets += ["--set", f"{k}={v}"]
    return [sys.executable, "-m", "bench.cli", "run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke",
            "--out", str(tmp_path / out), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *sets, *extra]


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    ref = subprocess.run(_cli(tmp_path, "ref"), env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run_dir = tmp_path / "killed" / "toy" / "cut" / "seed0"
    proc = subprocess.Popen(_cli(tmp_path, "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                loop = load_checkpoint(last)["loop"]
            except Exception:
                time.sleep(0.02)
                continue
            if loop["iteration"] >= 5 and loop["batch_pos"] > 0:  # mid-epoch, past the first epoch end
                proc.send_signal(signal.SIGKILL)
                killed_at = loop
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert not (run_dir / "metrics.json").exists()
    resumed = subprocess.run(_cli(tmp_path, "killed", "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_nets(_nets(tmp_path / "ref/toy/cut/seed0/checkpoints/last.pt"), _nets(last))
    a = json.loads((tmp_path / "ref/toy/cut/seed0/metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    assert a["last"]["metrics"]["swd"]["value"] == b["last"]["metrics"]["swd"]["value"]
    # the resumed run continued the same MLflow run
    assert (run_dir / "mlflow_run_id.txt").read_text() == (run_dir / "mlflow_run_id.txt").read_text()


def test_crashed_run_is_marked_failed(tmp_path, monkeypatch):
    import mlflow

    from methods.cut import CUT

    def boom(self, batch):
        raise RuntimeError("exploded on purpose")

    monkeypatch.setattr(CUT, "train_step", boom)
    cfg = build_run_config("cut", "toy", 0, "smoke", FAST, out=str(tmp_path / "crash"),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(RuntimeError, match="exploded"):
        run_one(cfg)
    run_id = (cfg.run_dir / "mlflow_run_id.txt").read_text().strip()
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FAILED"
    assert (cfg.run_dir / "error.txt").read_text().count("exploded") >= 1

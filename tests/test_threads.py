"""CPU threads are part of a run's protocol: resolved before training, recorded, kept (or refused) on resume."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from bench import threads
from bench.checkpoint import load_checkpoint
from bench.config import RESUMABLE_TRAIN_FIELDS
from bench.errors import ConfigError
from bench.runner import build_run_config, run_one
from bench.threads import CONTINUITY_FILE

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "n_epochs": "1", "n_epochs_decay": "0"}


def _cfg(tmp_path, out, **extra):
    return build_run_config("cut", "toy", 0, "smoke", {**FAST, **extra}, out=str(tmp_path / out),
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _nets(cfg):
    return load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["method"]["nets"]


def test_auto_rule_one_thread_for_small_images_cores_for_large(monkeypatch):
    monkeypatch.delenv(threads.ENV_SHARE, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.resolve(0, 32).intra_op == 1
    assert threads.resolve(0, threads.ONE_THREAD_MAX_CROP).intra_op == 1
    assert threads.resolve(0, 256).intra_op == threads.available_cores()
    monkeypatch.setenv(threads.ENV_SHARE, "3")  # a launcher's share of the cores wins over the affinity
    assert threads.resolve(0, 256).intra_op == 3
    assert threads.resolve(5, 32).intra_op == 5 and threads.resolve(5, 32).rule == "explicit"
    monkeypatch.setenv(threads.ENV_SHARE, "zero")
    with pytest.raises(ConfigError, match="BENCH_CPU_SHARE"):
        threads.available_cores()


def test_resume_keeps_the_recorded_count_and_refuses_another():
    assert threads.resolve(0, 256, saved=2).intra_op == 2  # auto on resume = what the run trained with
    assert threads.resolve(2, 32, saved=2).intra_op == 2
    with pytest.raises(ConfigError, match=r"trained with 2 intra-op thread\(s\).*--allow-thread-change"):
        threads.resolve(1, 32, saved=2)
    assert threads.resolve(1, 32, saved=2, allow_change=True).intra_op == 1


def test_threads_is_not_a_resumable_field_and_is_a_param(tmp_path):
    assert "threads" not in RESUMABLE_TRAIN_FIELDS
    cfg = _cfg(tmp_path, "x", **{"train.threads": "2"})
    assert cfg.flat_params()["train.threads"] == "2"
    assert cfg.config_hash() != _cfg(tmp_path, "x", **{"train.threads": "1"}).config_hash()


def test_effective_count_is_recorded_and_two_runs_with_it_are_bitwise_equal(tmp_path):
    before = torch.get_num_threads()
    try:
        a, b = _cfg(tmp_path, "a", **{"train.threads": "2"}), _cfg(tmp_path, "b", **{"train.threads": "2"})
        ra, rb = run_one(a), run_one(b)
    finally:
        torch.set_num_threads(before)
    for cfg, r in ((a, ra), (b, rb)):
        assert json.loads((cfg.run_dir / "config.json").read_text())["train"]["threads"] == 2
        run = mlflow.MlflowClient(cfg.tracking_uri).get_run(r.mlflow_run_id)
        assert run.data.params["train.threads"] == "2"
        assert run.data.tags["bench.compute.intra_op_threads"] == "2"
        fp = json.loads((cfg.run_dir / "metrics.json").read_text())["last"]["metrics"]["swd"]["fingerprint"]
        assert fp["compute"]["intra_op_threads"] == 2 and fp["compute"]["precision"] == "fp32"
    na, nb = _nets(a), _nets(b)
    for net in na:
        for k in na[net]:
            assert torch.equal(na[net][k], nb[net][k]), f"{net}.{k}"
    # The automatic rule's count is what a default run records (1 at smoke size), never 0.
    c = _cfg(tmp_path, "c")
    run_one(c)
    assert json.loads((c.run_dir / "config.json").read_text())["train"]["threads"] == 1


def test_resume_with_another_thread_count_is_refused_or_marked(tmp_path, capsys):
    cfg = _cfg(tmp_path, "r")
    run_one(cfg)
    (cfg.run_dir / "metrics.json").unlink()  # as if killed before the final evaluation
    with pytest.raises(ConfigError, match=r"trained with 1 intra-op thread\(s\), --set train.threads=2"):
        run_one(_cfg(tmp_path, "r", **{"train.threads": "2"}), resume=True)
    from bench.cli import main

    argv = ["run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke", "--out", str(tmp_path / "r"),
            "--tracking-uri", cfg.tracking_uri, "--resume", "--set", "train.threads=2"]
    for k, v in FAST.items():
        argv += ["--set", f"{k}={v}"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: error: --resume:") and "1 intra-op thread(s)" in err[0]
    assert not (cfg.run_dir / "metrics.json").exists() and not (cfg.run_dir / CONTINUITY_FILE).exists()

    before = torch.get_num_threads()
    try:
        r = run_one(_cfg(tmp_path, "r", **{"train.threads": "2"}), resume=True, allow_thread_change=True)
    finally:
        torch.set_num_threads(before)
    assert r.status == "finished"
    continuity = json.loads((cfg.run_dir / CONTINUITY_FILE).read_text())
    assert continuity["bitwise_continuous"] is False and continuity["threads"] == 2
    assert continuity["thread_changes"] == [{"from": 1, "to": 2, "at_iteration": 4}]
    assert json.loads((cfg.run_dir / "config.json").read_text())["train"]["threads"] == 1  # as started
    run = mlflow.MlflowClient(cfg.tracking_uri).get_run(r.mlflow_run_id)
    assert run.data.tags["bench.compute.bitwise_continuous"] == "false"
    fp = json.loads((cfg.run_dir / "metrics.json").read_text())["last"]["metrics"]["swd"]["fingerprint"]
    assert fp["compute"]["bitwise_continuous"] is False and fp["compute"]["intra_op_threads"] == 2


def test_an_automatic_count_keeps_the_recorded_one_through_the_run_lifecycle(tmp_path, monkeypatch):
    """train.threads=0 on a rerun means "as the run recorded": a finished run is kept, a reproduce plan reuses
    it, --restart resolves afresh; an explicit other count is a settings difference (--restart to replace)."""
    from bench.reproduce import config_difference
    from bench.run_folder import RunFolderConflict

    cfg = _cfg(tmp_path, "k")
    first = run_one(cfg)
    doc = json.loads((cfg.run_dir / "config.json").read_text())
    doc["train"]["threads"] = 2  # as if started where the rule gave 2 (a larger image, another machine)
    (cfg.run_dir / "config.json").write_text(json.dumps(doc))
    stamp = (cfg.run_dir / "metrics.json").stat().st_mtime_ns
    again = run_one(_cfg(tmp_path, "k"))
    assert again.kept and (cfg.run_dir / "metrics.json").stat().st_mtime_ns == stamp
    assert again.mlflow_run_id == first.mlflow_run_id
    assert config_difference(_cfg(tmp_path, "k")) == ""
    assert "train settings" in config_difference(_cfg(tmp_path, "k", **{"train.threads": "1"}))
    with pytest.raises(RunFolderConflict, match=r"train\.threads: 2 -> 1.*--restart"):
        run_one(_cfg(tmp_path, "k", **{"train.threads": "1"}))
    redone = run_one(_cfg(tmp_path, "k"), restart=True)
    assert not redone.kept
    assert json.loads((cfg.run_dir / "config.json").read_text())["train"]["threads"] == 1


def test_settle_records_a_fresh_count_and_keeps_a_trained_one(tmp_path):
    cfg = _cfg(tmp_path, "s")
    settled, plan, continuity = threads.settle(cfg)
    assert settled.train.threads == plan.intra_op == 1 and continuity == {}
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    (cfg.run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    (cfg.run_dir / "config.json").write_text(json.dumps({"train": {"threads": 3}}))
    settled, plan, _ = threads.settle(cfg, resume=True)
    assert settled.train.threads == plan.intra_op == 3 and plan.rule.startswith("resumed")
    assert threads.settle(cfg, restart=True)[0].train.threads == 1  # --restart: the folder is moved aside
    explicit = _cfg(tmp_path, "s", **{"train.threads": "2"})
    assert threads.settle(explicit)[0].train.threads == 2  # no --resume: run_folder compares (and refuses)
    settled, plan, continuity = threads.settle(explicit, resume=True, allow_change=True)
    assert settled.train.threads == 3 and plan.intra_op == 2  # config as started, trains with 2
    assert continuity == {"threads": 2, "bitwise_continuous": False, "thread_changes": [{"from": 3, "to": 2}]}
    (cfg.run_dir / "config.json").write_text(json.dumps({"train": {"threads": 0}}))  # recorded before bench kept it
    settled, plan, _ = threads.settle(cfg, resume=True)
    assert settled.train.threads == 0 and plan.intra_op == 1

"""The training loop end to end on the built-in toy data: determinism, resume after SIGKILL, failure marking."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    # ... with the last weights, as the official test scripts (never the test-set-selected best).
    assert doc["reverse"]["weights"] == "last" and doc["reverse"]["epoch"] == doc["last"]["epoch"]
    assert doc["reverse"]["metrics"]["swd"]["fingerprint"]["epoch_rule"] == "last"
    assert doc["last"]["metrics"]["swd"]["fingerprint"]["test_set"] == "per_input"
    assert len(list((d / "eval" / "last" / "fake").glob("*.png"))) == 4
    # A plain rerun (and --resume) of a finished run with the same settings keeps it: same metrics, no new
    # training or evaluation, reported as kept.
    stamp = (d / "metrics.json").stat().st_mtime_ns
    for resume in (False, True):
        again = run_one(cfg, resume=resume)
        assert again.status == "finished" and again.kept and again.metrics == r.metrics
        assert again.mlflow_run_id == r.mlflow_run_id and (d / "metrics.json").stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow sqlite database with its tables created (seconds of migrations, done once per module)."""
    from bench.tracking import make_client

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    make_client(f"sqlite:///{path}").search_experiments()
    return path


def _cli(tmp_path, out, *extra):
    sets = []
    # 8 items x 4 epochs, a mid-epoch checkpoint every 2 iterations, one intra-op thread like the tests.
    for k, v in {**FAST, "n_epochs": "2", "n_epochs_decay": "2", "train.save_every": "2", "train.threads": "1",
                 "train.eval_every": "2", "train.log_every": "4", "eval.score_best": "false"}.items():
        sets += ["--set", f"{k}={v}"]
    return [sys.executable, "-m", "bench.cli", "run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke",
            "--out", str(tmp_path / out), "--tracking-uri", f"sqlite:///{tmp_path / out}.db", *sets, *extra]


def test_resume_after_sigkill_reaches_the_same_weights(tmp_path, empty_mlflow_db):
    """A real SIGKILL mid-epoch, then --resume: the same weights and scores as an uninterrupted run, in the same
    MLflow run. (Was in the slow set only; the reference run now trains beside the killed one, each with its own
    copy of an initialised MLflow database.)"""
    for out in ("ref", "killed"):
        shutil.copyfile(empty_mlflow_db, tmp_path / f"{out}.db")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    ref = subprocess.Popen(_cli(tmp_path, "ref"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
                time.sleep(0.01)
                continue
            if loop["iteration"] >= 5 and loop["batch_pos"] > 0:  # mid-epoch, past the first epoch end
                proc.send_signal(signal.SIGKILL)
                killed_at = loop
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert not (run_dir / "metrics.json").exists()
    run_id = (run_dir / "mlflow_run_id.txt").read_text()
    resumed = subprocess.run(_cli(tmp_path, "killed", "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    assert load_checkpoint(last)["loop"]["iteration"] == 32 > killed_at["iteration"]
    _assert_same_nets(_nets(tmp_path / "ref/toy/cut/seed0/checkpoints/last.pt"), _nets(last))
    a = json.loads((tmp_path / "ref/toy/cut/seed0/metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    assert a["last"]["metrics"]["swd"]["value"] == b["last"]["metrics"]["swd"]["value"]
    assert a["history"] == b["history"]
    # the resumed run continued the MLflow run the killed one had started
    assert (run_dir / "mlflow_run_id.txt").read_text() == run_id and run_id.strip()


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


# ------------------------------------------------------------------------------------------ diverged runs
def _mlflow_run(tmp_path, cfg):
    import mlflow

    run_id = (cfg.run_dir / "mlflow_run_id.txt").read_text().strip()
    return mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)


def test_a_non_finite_loss_stops_the_run_as_failed_and_unscored(tmp_path, monkeypatch):
    """lr=inf / nce_T=0 / lambda_NCE=nan trained to NaN weights that were then scored as if valid."""
    from bench.errors import TrainingDiverged
    from methods.cut import CUT

    real = CUT.train_step
    calls = []

    def goes_bad(self, batch):
        losses = real(self, batch)
        calls.append(1)
        if len(calls) == 3:
            losses["NCE"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(CUT, "train_step", goes_bad)
    cfg = build_run_config("cut", "toy", 0, "smoke", FAST, out=str(tmp_path / "nan"),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(TrainingDiverged, match=r"cut/toy/seed0: loss NCE = nan at iteration 3 \(epoch 1\)"):
        run_one(cfg)
    assert not (cfg.run_dir / "metrics.json").exists()
    assert not (cfg.run_dir / "checkpoints" / "last.pt").exists()  # nothing after the bad step was saved
    run = _mlflow_run(tmp_path, cfg)
    assert run.info.status == "FAILED" and run.data.tags["bench.status"] == "failed"
    assert not [k for k in run.data.metrics if k.startswith(("last/", "best/"))]


def test_non_finite_weights_stop_the_run_before_they_are_evaluated(tmp_path, monkeypatch):
    from bench.errors import TrainingDiverged
    from methods.cut import CUT

    real = CUT.train_step

    def poisons(self, batch):
        losses = real(self, batch)  # finite losses, then a weight goes bad (as with lr=inf after one step)
        with torch.no_grad():
            next(self.nets["netG"].parameters()).fill_(float("inf"))
        return losses

    monkeypatch.setattr(CUT, "train_step", poisons)
    cfg = build_run_config("cut", "toy", 0, "smoke", {**FAST, "train.max_iters": "1"}, out=str(tmp_path / "inf"),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(TrainingDiverged, match=r"weight netG\.model\.\S+ is not finite after iteration 1"):
        run_one(cfg)
    assert not (cfg.run_dir / "metrics.json").exists() and not (cfg.run_dir / "history.json").exists()


# ------------------------------------------------------------------------------------------ resume refusals
def test_resume_refuses_a_checkpoint_of_another_method_or_configuration(tmp_path, monkeypatch):
    """An untrained FastCUT last.pt in a CUT run folder was resumed, scored and reported as a finished CUT run."""
    from bench.errors import CheckpointError, ConfigError
    from methods.cut import CUT

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    short = {**FAST, "train.max_iters": "1"}
    fast_cfg = build_run_config("fastcut", "toy", 0, "smoke", short, out=str(tmp_path / "f"), tracking_uri=db)
    run_one(fast_cfg)
    other_cfg = build_run_config("cut", "toy", 0, "smoke", {**short, "lambda_NCE": "3"}, out=str(tmp_path / "o"),
                                 tracking_uri=db)
    run_one(other_cfg)

    cfg = build_run_config("cut", "toy", 0, "smoke", short, out=str(tmp_path / "c"), tracking_uri=db)
    with monkeypatch.context() as m:  # a CUT run that crashed at its first step: config.json, no last.pt
        m.setattr(CUT, "train_step", lambda self, batch: (_ for _ in ()).throw(RuntimeError("crash")))
        with pytest.raises(RuntimeError):
            run_one(cfg)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fast_cfg.run_dir / "checkpoints" / "last.pt", last)
    with pytest.raises(CheckpointError, match=r"last.pt is a checkpoint of fastcut, not of this cut run") as info:
        run_one(cfg, resume=True)
    assert "\n" not in str(info.value)
    shutil.copyfile(other_cfg.run_dir / "checkpoints" / "last.pt", last)  # same method, other lambda_NCE
    with pytest.raises(CheckpointError, match=r"was written under other settings \(config hash"):
        run_one(cfg, resume=True)
    assert not (cfg.run_dir / "metrics.json").exists()
    # and a changed setting on --resume is refused before anything runs
    changed = build_run_config("cut", "toy", 0, "smoke", {**short, "lambda_NCE": "2"}, out=str(tmp_path / "c"),
                               tracking_uri=db)
    with pytest.raises(ConfigError, match=r"with other settings \(method_cfg.lambda_NCE: 1.0 -> 2.0\)"):
        run_one(changed, resume=True)


# ------------------------------------------------------------------------------------------ the loop's promises
def test_evaluation_leaves_the_training_rngs_untouched(tmp_path, monkeypatch):
    """Evaluating every epoch or only at the end gives the same weights, even when evaluation draws from every
    global RNG (restored by preserved_rng)."""
    import random

    import numpy as np

    from bench.evaluation import Evaluator

    real = Evaluator.quick

    def draws(self, *args, **kwargs):
        random.random(), np.random.rand(), torch.rand(3)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "quick", draws)
    common = {**FAST, "data.max_train": "4", "eval.score_best": "false"}
    every, _ = _run(tmp_path, "every", **{**common, "train.eval_every": "1"})
    end, _ = _run(tmp_path, "end", **{**common, "train.eval_every": "2"})
    assert len(json.loads((every.run_dir / "history.json").read_text())) == 2
    assert len(json.loads((end.run_dir / "history.json").read_text())) == 1
    _assert_same_nets(_nets(every.run_dir / "checkpoints" / "last.pt"), _nets(end.run_dir / "checkpoints" / "last.pt"))


def test_learning_rate_steps_once_per_epoch_along_the_linear_decay(tmp_path, monkeypatch):
    from bench.train import Trainer
    from methods.schedules import linear_decay

    seen = []
    real = Trainer.save

    def records(self):
        seen.append((self.state.epoch, self.state.batch_pos, self._lr()))
        real(self)

    monkeypatch.setattr(Trainer, "save", records)
    cfg, r = _run(tmp_path, "lr", **{**FAST, "data.max_train": "2", "n_epochs": "1", "n_epochs_decay": "3",
                                     "eval.score_best": "false", "train.eval_every": "4"})
    assert r.status == "finished"
    base = cfg.method_cfg.lr
    # After epoch e (saved as "next epoch e+1, batch 0") the lr is base * lambda(e): 1, 3/4, 2/4, 1/4 of base ...
    at_epoch_ends = [(e, lr) for e, pos, lr in seen if pos == 0]
    assert [e for e, _ in at_epoch_ends][:4] == [2, 3, 4, 5]
    for e, lr in at_epoch_ends:
        assert lr == pytest.approx(base * linear_decay(e - 1, 1, 3)), e
    assert at_epoch_ends[0][1] == pytest.approx(base * 0.75) and at_epoch_ends[-1][1] == pytest.approx(0.0)


def test_max_iters_stops_mid_epoch_and_scores_what_was_trained(tmp_path):
    cfg, r = _run(tmp_path, "budget", **{**FAST, "train.max_iters": "3"})
    assert r.status == "finished"
    loop = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["loop"]
    assert (loop["iteration"], loop["epoch"], loop["batch_pos"], loop["finished"]) == (3, 1, 3, True)
    doc = json.loads((cfg.run_dir / "metrics.json").read_text())
    assert doc["last"]["epoch"] == 1 and [h["iteration"] for h in doc["history"]] == [3]
    assert doc["last"]["metrics"]["swd"]["value"] is not None


def test_methods_all_continues_after_one_method_fails(tmp_path, monkeypatch, capsys):
    import methods.registry as registry
    from bench.cli import main
    from methods.cut import CUT

    monkeypatch.setattr(registry, "METHODS", {k: registry.METHODS[k] for k in ("cut", "fastcut", "pix2pix")})
    real = CUT.train_step

    def cut_only_fails(self, batch):
        if self.name == "cut":
            raise RuntimeError("cut exploded on purpose")
        return real(self, batch)

    monkeypatch.setattr(CUT, "train_step", cut_only_fails)
    sets = [x for k, v in {**FAST, "train.max_iters": "2", "eval.score_best": "false"}.items()
            for x in ("--set", f"{k}={v}")]
    code = main(["run", "--methods", "all", "--dataset", "horse2zebra", "--data-root",
                 str(_toy_as_unpaired(tmp_path)), "--preset", "smoke", "--out", str(tmp_path / "all"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-progress", *sets])
    out = capsys.readouterr().out
    assert code == 1  # one run failed
    assert "cut exploded on purpose" in out and "finished" in out and "skipped" in out  # pix2pix needs pairs
    assert (tmp_path / "all" / "horse2zebra" / "fastcut" / "seed0" / "metrics.json").is_file()
    assert not (tmp_path / "all" / "horse2zebra" / "cut" / "seed0" / "metrics.json").exists()


def _toy_as_unpaired(tmp_path) -> Path:
    """The toy set's unaligned folders in horse2zebra's layout (trainA/B, testA/B), for an unpaired dataset."""
    from bench.data.roots import resolve_root

    toy = resolve_root("toy")
    root = tmp_path / "h2z"
    for sub in ("trainA", "trainB", "testA", "testB"):
        shutil.copytree(toy / sub, root / sub)
    return root

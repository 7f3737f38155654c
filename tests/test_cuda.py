"""CUDA checks of the scale-out and speed switches (skipped without a GPU; run by benchmarks/gpu_check.sh).

Bitwise determinism is not asserted on CUDA: some kernels the nets use (reflection-pad and upsampling
backward) have no deterministic CUDA implementation, and `train.deterministic` only warns about them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import methods
from bench.batches import epoch_batches, epoch_order
from bench.data import load_pairs
from bench.precision import Amp
from bench.runner import build_run_config, run_one
from test_methods_contract import NAMES, make_batch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "n_epochs": "1", "n_epochs_decay": "1",
        "train.device": "cuda"}


@pytest.mark.parametrize("name", NAMES)
def test_every_method_trains_under_fp16_and_bf16_on_cuda(name):
    for precision in ("fp16", "bf16"):
        torch.manual_seed(0)
        m = methods.build(name, preset="smoke", device="cuda",
                          **({"allow_random_vgg": True} if name in ("fsesim", "lsesim") else {}))
        batch = make_batch(m)
        m.setup(batch)
        m.train()
        amp = Amp(precision, m.device)
        amp.guard(m.optimizers.values())
        with amp.train_step():
            losses = m.train_step(batch)
        assert all(torch.isfinite(v).all() for v in losses.values()), (precision, losses)


@pytest.mark.parametrize("switches", [{"train.precision": "bf16", "train.channels_last": "true", "train.tf32": "true"},
                                      {"train.precision": "fp16"},
                                      {"train.precision": "bf16", "train.compile": "true"}])
def test_a_run_with_speed_switches_on_cuda_is_recorded(tmp_path, switches):
    cfg = build_run_config("cut", "toy", 0, "smoke", {**FAST, **switches}, out=str(tmp_path / "runs"),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run_one(cfg).status == "finished"
    fp = json.loads((cfg.run_dir / "metrics.json").read_text())["last"]["metrics"]["swd"]["fingerprint"]
    for key, value in switches.items():
        recorded = fp["compute"][key.split(".", 1)[1]]
        assert str(recorded).lower() == value, (key, recorded)


def test_pinned_loader_batches_equal_in_loop_batches():
    ds = load_pairs("toy", "train", load_size=36, crop_size=32, seed=1)
    ds.set_epoch(2)
    order = epoch_order(1, 2, 6)
    here = list(epoch_batches(ds, order, 2, 3, 1))
    there = list(epoch_batches(ds, order, 2, 3, 1, num_workers=2, pin_memory=True))
    assert len(here) == len(there) == 2
    for a, b in zip(here, there):
        assert b["A"].is_pinned()
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])


def test_pool_runs_two_runs_on_one_gpu(tmp_path):
    argv = [sys.executable, "-m", "bench.cli", "run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke",
            "--seeds", "0", "1", "--out", str(tmp_path / "runs"), "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-progress", "--workers", "2", "--devices", "0",
            "--runs-per-device", "2"]
    for k, v in FAST.items():
        if k != "train.device":
            argv += ["--set", f"{k}={v}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for seed in (0, 1):
        cfg = json.loads((tmp_path / "runs/toy/cut" / f"seed{seed}" / "config.json").read_text())
        assert cfg["train"]["device"] == "cuda"
        assert (tmp_path / "runs/toy/cut" / f"seed{seed}" / "metrics.json").is_file()

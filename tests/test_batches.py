"""Loader workers (train.num_workers) give the loop exactly the batches it decodes itself, from any position."""

from __future__ import annotations

import torch

import numpy as np

from bench.batches import epoch_batches, epoch_order
from bench.checkpoint import load_checkpoint
from bench.data import load_pairs
from bench.runner import build_run_config, run_one

FAST = {"data.max_train": "6", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "n_epochs": "1", "n_epochs_decay": "1"}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_worker_batches_equal_in_loop_batches_from_any_start():
    ds = load_pairs("toy", "train", load_size=36, crop_size=32, seed=3)
    n = 7
    for epoch, start in ((1, 0), (2, 3)):  # a fresh epoch and a mid-epoch resume position
        ds.set_epoch(epoch)
        order = epoch_order(3, epoch, n)
        here = list(epoch_batches(ds, order, 2, n // 2, start, num_workers=0))
        there = list(epoch_batches(ds, order, 2, n // 2, start, num_workers=2))
        assert len(here) == len(there) == n // 2 - start
        for a, b in zip(here, there):
            _same(a, b)


def test_worker_batches_of_a_stream_sampling_mode_equal_in_loop_batches():
    # NICE-GAN's cycle and MUNIT's zip streams order their own data (the loop passes 0..n-1).
    from bench.data.transforms import Pipeline

    for sampling in ("cycle", "zip"):
        ds = load_pairs("toy", "train", load_size=36, crop_size=32, seed=2, pipeline=Pipeline(sampling=sampling))
        assert not ds.shuffled
        ds.set_epoch(3)
        order = np.arange(len(ds))
        here = list(epoch_batches(ds, order, 1, 4, 1))
        there = list(epoch_batches(ds, order, 1, 4, 1, num_workers=2))
        assert len(here) == len(there) == 3
        for a, b in zip(here, there):
            _same(a, b)


def test_loader_workers_leave_the_global_rng_alone():
    ds = load_pairs("toy", "train", load_size=36, crop_size=32, seed=0)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    list(epoch_batches(ds, epoch_order(0, 1, 4), 1, 4, num_workers=2))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_run_with_loader_workers_has_the_same_weights(tmp_path):
    nets = []
    for workers in ("0", "2"):
        cfg = build_run_config("cut", "toy", 0, "smoke", {**FAST, "train.num_workers": workers},
                               out=str(tmp_path / workers), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert run_one(cfg).status == "finished"
        nets.append(load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["method"]["nets"])
    for net in nets[0]:
        for k in nets[0][net]:
            assert torch.equal(nets[0][net][k], nets[1][net][k]), f"{net}.{k}"

"""Unpaired sampling as the official loaders draw it: B with replacement (CUT/CycleGAN), each domain its own
stream of shuffled passes (NICE-GAN), zipped per-epoch permutations (MUNIT); all pure functions of (seed, epoch,
position), so runs stay seeded and resumable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import methods
from bench.data import load_pairs
from bench.data.transforms import Pipeline


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


@pytest.fixture
def h2z(tmp_path) -> Path:
    """|trainA| = 3, |trainB| = 5 tiny noise images."""
    root = tmp_path / "h2z"
    for folder, n in (("trainA", 3), ("trainB", 5), ("testA", 1), ("testB", 1)):
        for i in range(n):
            (root / folder).mkdir(parents=True, exist_ok=True)
            arr = np.random.default_rng(i + 10 * len(folder)).integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / folder / f"{i}.png")
    return root


def names(ds, epoch: int, key: str) -> list[str]:
    ds.set_epoch(epoch)
    return [Path(ds[i][f"{key}_path"]).name for i in range(len(ds))]


def loader(root, sampling: str, seed: int = 0, **kw):
    return load_pairs("horse2zebra", "train", root=root, load_size=12, crop_size=8, seed=seed,
                      pipeline=Pipeline(sampling=sampling), **kw)


def test_cycle_draws_each_domain_without_replacement_in_passes(h2z):
    ds = loader(h2z, "cycle")
    assert (len(ds), ds.shuffled) == (5, False)
    a = sum((names(ds, e, "A") for e in (1, 2, 3)), [])  # 15 consecutive global positions
    b = sum((names(ds, e, "B") for e in (1, 2, 3)), [])
    for k in range(0, 15, 3):  # every pass over A is a permutation of A
        assert sorted(a[k:k + 3]) == ["0.png", "1.png", "2.png"]
    for k in range(0, 15, 5):
        assert sorted(b[k:k + 5]) == [f"{i}.png" for i in range(5)]
    assert len({tuple(a[k:k + 3]) for k in range(0, 15, 3)}) > 1  # each pass shuffled afresh
    # random_b (CUT, CycleGAN): B is drawn with replacement, A follows the index
    rb = loader(h2z, "random_b")
    draws = sum((names(rb, e, "B") for e in range(1, 6)), [])
    assert rb.shuffled and max(Counter(draws[k:k + 5]).most_common(1)[0][1] for k in range(0, 25, 5)) > 1


def test_zip_is_min_length_and_distinct_per_epoch(h2z):
    ds = loader(h2z, "zip")
    assert len(ds) == 3 and not ds.shuffled
    for epoch in (1, 2, 3):
        a, b = names(ds, epoch, "A"), names(ds, epoch, "B")
        assert sorted(a) == ["0.png", "1.png", "2.png"] and len(set(b)) == 3
    assert len({tuple(names(ds, e, "B")) for e in range(1, 6)}) > 1


@pytest.mark.parametrize("sampling", ["cycle", "zip"])
def test_streams_are_a_function_of_seed_epoch_and_position(h2z, sampling):
    one, two = loader(h2z, sampling), loader(h2z, sampling)
    one.set_epoch(2), two.set_epoch(2)
    for i in (2, 0, 1, 2):  # any access order, a fresh object
        x, y = one[i], two[i]
        assert (x["A_path"], x["B_path"]) == (y["A_path"], y["B_path"]) and torch.equal(x["A"], y["A"])
    other = loader(h2z, sampling, seed=1)
    assert names(one, 2, "B") != names(other, 2, "B") or names(one, 2, "A") != names(other, 2, "A")


def test_max_train_limits_each_domain_of_a_stream(h2z):
    ds = loader(h2z, "cycle", max_items=2)
    assert (len(ds), ds.full_len) == (2, 5)
    assert set(names(ds, 1, "A") + names(ds, 2, "A")) <= {"0.png", "1.png"}
    assert set(names(ds, 1, "B") + names(ds, 2, "B")) <= {"0.png", "1.png"}


def test_nicegan_and_munit_trainers_do_not_reshuffle_their_streams(h2z):
    from bench.runner import build_run_config
    from bench.tracking import Tracker
    from bench.train import Trainer

    for method, sampling in (("nicegan", "cycle"), ("munit", "zip"), ("cut", "random_b")):
        cfg = build_run_config(method, "horse2zebra", 0, "smoke", {})
        m = methods.get(method)(cfg.method_cfg, device="meta")
        assert m.data_pipeline().sampling == sampling
        ds = loader(h2z, sampling)
        t = Trainer(cfg, m, ds, None, Tracker.disabled(), "unused")
        order = t.order(1)
        assert (list(order) == list(range(len(ds)))) == (sampling != "random_b")


def test_lsesim_loader_jitters_the_8bit_crop_and_keeps_the_plain_one(h2z):
    plain = loader(h2z, "random_b")
    jit = load_pairs("horse2zebra", "train", root=h2z, load_size=12, crop_size=8,
                     pipeline=Pipeline(color_jitter=True))
    plain.set_epoch(1), jit.set_epoch(1)
    p, j = plain[1], jit[1]
    assert torch.equal(p["A"], j["A"]) and torch.equal(p["B"], j["B"])  # drawn after the crop: no stream shift
    assert j["A_aug"].shape == p["A"].shape and not torch.equal(j["A_aug"], j["A"])
    # the jitter works on 8-bit images: every value is k/255 rescaled to [-1, 1]
    levels = (j["A_aug"] + 1) / 2 * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)

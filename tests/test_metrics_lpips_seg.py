"""LPIPS diversity (code path with a random trunk) and the Cityscapes DRN segmentation scores."""

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import CheckpointError, UsageError
from bench.metrics import lpips_diversity, segmentation_scores
from bench.metrics import segmentation as seg
from bench.metrics.drn import DRNSeg, drn_trunk

# `bench.metrics.lpips_diversity` is the function (the public API); the module under the same name:
lpips_mod = importlib.import_module("bench.metrics.lpips_diversity")


# ------------------------------------------------------------------------------------------ LPIPS diversity
def _samples(seed=0, n=2, k=4, size=32):
    return torch.rand(n, k, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_lpips_diversity_code_path_with_random_trunk():
    outs = _samples()
    r = lpips_diversity(outs, pnet_rand=True, seed=0)
    assert r.value > 0 and r.details["n_pairs"] == 2 * 3 and r.higher_is_better
    fp = r.fingerprint
    assert fp["version"] == "0.0" and fp["net"] == "alex" and fp["n_samples"] == 4 and "random" in fp["trunk"]
    assert lpips_diversity(outs, pnet_rand=True, seed=0).value == r.value  # seeded random trunk
    same = outs[:, :1].expand(-1, 4, -1, -1, -1)
    assert lpips_diversity(same, pnet_rand=True).value == pytest.approx(0, abs=1e-7)
    via_callable = lpips_diversity(lambda i: outs[i], n_inputs=2, pnet_rand=True)
    assert via_callable.value == pytest.approx(r.value, rel=1e-6)
    as_uint8 = lpips_diversity(((outs + 1) * 127.5).round().to(torch.uint8), pnet_rand=True)
    assert as_uint8.value == pytest.approx(r.value, rel=0.05)


def test_lpips_input_errors():
    with pytest.raises(UsageError, match=r"\[-1,1\]"):
        lpips_diversity(_samples() * 3, pnet_rand=True)
    with pytest.raises(UsageError, match="N_inputs, K_samples"):
        lpips_diversity(torch.zeros(2, 3, 8, 8), pnet_rand=True)
    with pytest.raises(UsageError, match="n_inputs"):
        lpips_diversity(lambda i: _samples()[0], pnet_rand=True)
    with pytest.raises(UsageError, match="net must be one of"):
        lpips_diversity(_samples(), net="resnet", pnet_rand=True)


def test_lpips_without_imagenet_trunk_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    r = lpips_diversity(_samples())
    assert r.value is None and "alexnet-owt-7be5be79.pth" in r.unavailable and str(tmp_path) in r.unavailable
    assert lpips_mod.trunk_weights_file("vgg").name.startswith("vgg16")


# ------------------------------------------------------------------------------------------ segmentation
def test_palette_colours_map_to_train_ids():
    colours = seg.PALETTE[:, None, :].astype(np.uint8)  # (20, 1, 3)
    ids = seg.colors_to_train_ids(colours)[:, 0]
    assert list(ids[:19]) == list(range(19)) and ids[19] == 255
    noisy = np.clip(seg.PALETTE[:19].astype(int) + 6, 0, 255).astype(np.uint8)[None]  # JPEG-like drift
    assert list(seg.colors_to_train_ids(noisy)[0]) == list(range(19))
    assert seg.colors_to_train_ids(np.array([[[81, 0, 81]]], dtype=np.uint8))[0, 0] != 255  # void 'ground' -> nearest


def test_scores_from_a_hand_made_confusion_matrix():
    pred = np.array([0, 0, 0, 1, 1, 1, 5])
    truth = np.array([0, 0, 0, 0, 1, 1, 255])  # the last pixel is ignored
    hist = seg.confusion(pred, truth)
    assert hist[0, 0] == 3 and hist[0, 1] == 1 and hist[1, 1] == 2 and hist.sum() == 6
    s = seg.scores_from_confusion(hist)
    assert s["pixel_acc"] == pytest.approx(100 * 5 / 6)
    assert s["class_acc"] == pytest.approx(100 * (3 / 4 + 2 / 2) / 2)
    assert s["miou"] == pytest.approx(100 * (3 / 4 + 2 / 3) / 2)  # IoU0 = 3/(4+3-3), IoU1 = 2/(2+3-2)
    assert seg.scores_from_confusion(np.diag([5, 0, 7] + [0] * 16))["miou"] == pytest.approx(100)


def test_drn_d22_architecture_matches_the_published_size():
    trunk = drn_trunk("drn_d_22")
    n = sum(p.numel() for p in trunk.parameters())
    assert round((n + 512 * 1000 + 1000) / 1e6, 1) == 16.4  # fyu/drn README: DRN-D-22 16.4M (with its 1000-way fc)
    model = DRNSeg("drn_d_22")
    keys = list(model.state_dict())
    assert keys[:2] == ["base.0.0.weight", "base.0.1.weight"] and keys[-3:] == ["seg.weight", "seg.bias", "up.weight"]
    assert "base.3.0.downsample.0.weight" in keys and "base.8.0.weight" in keys
    assert model(torch.zeros(1, 3, 32, 64)).shape == (1, 19, 32, 64)


def _seg_data(tmp_path, n=2):
    rng = np.random.default_rng(0)
    for i in range(n):
        label = np.zeros((64, 128, 3), dtype=np.uint8)
        label[:32] = seg.PALETTE[10]  # sky on top
        label[32:] = seg.PALETTE[0]   # road below
        label[32:, :16] = 0           # void
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "fake").mkdir(exist_ok=True)
        Image.fromarray(label).save(tmp_path / "labels" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(tmp_path / "fake" / f"{i}.png")
    return tmp_path / "fake", tmp_path / "labels"


def test_segmentation_scores_code_path_with_a_random_drn_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = DRNSeg("drn_d_22")
    ckpt = tmp_path / "drn_random.pth"
    torch.save(model.state_dict(), ckpt)
    fake, labels = _seg_data(tmp_path)
    r = segmentation_scores(fake, labels, ckpt, resolution=(64, 32), context={"direction": "label2photo"})
    assert set(r) == {"miou", "pixel_acc", "class_acc"}
    for v in r.values():
        assert v.value is not None and 0 <= v.value <= 100
        assert v.fingerprint["resolution"] == "64x32 (WxH)" and len(v.fingerprint["weights_sha256"]) == 64
        assert v.fingerprint["direction"] == "label2photo" and v.fingerprint["n_fake"] == 2
    # The same checkpoint wrapped like DataParallel / a training checkpoint, or without the fixed `up`, loads too.
    seg.load_drn.cache_clear()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items() if k != "up.weight"}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    r2 = segmentation_scores(fake, labels, tmp_path / "wrapped.pth", resolution=(64, 32))
    assert r2["miou"].value == pytest.approx(r["miou"].value)
    bad = {k: v for k, v in model.state_dict().items() if not k.startswith("seg.")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing"):
        segmentation_scores(fake, labels, tmp_path / "bad.pth", resolution=(64, 32))


def test_segmentation_without_weights_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.delenv(seg.SEG_WEIGHTS_ENV, raising=False)
    fake, labels = _seg_data(tmp_path)
    r = segmentation_scores(fake, labels, None)
    assert all(v.value is None and "--seg-weights" in v.unavailable for v in r.values())
    with pytest.raises(UsageError, match="no such file"):
        segmentation_scores(fake, labels, tmp_path / "missing.pth")
    with pytest.raises(UsageError, match="multiples of 8"):
        segmentation_scores(fake, labels, None, resolution=(100, 50))

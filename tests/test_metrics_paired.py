"""Paired scores (L1, PSNR, SSIM): hand-checked values, scikit-image parity, matching by file name."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import DataError, UsageError
from bench.metrics import evaluate, paired_scores
from bench.metrics.paired import ssim


def _const(value: int, n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def test_identical_images_give_l1_zero_psnr_cap_and_ssim_one():
    x = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    r = paired_scores(x, x.clone())
    assert r["l1"].value == 0 and r["ssim"].value == pytest.approx(1.0, abs=1e-12)
    assert r["psnr"].value == 100.0 and r["psnr"].details["n_capped"] == 3
    assert r["psnr"].fingerprint["cap_db"] == 100.0 and r["l1"].fingerprint["range"] == "[-1,1]"
    assert r["psnr"].higher_is_better and r["ssim"].higher_is_better and not r["l1"].higher_is_better


def test_hand_checked_constant_images():
    r = paired_scores(_const(100), _const(110))
    assert r["l1"].value == pytest.approx(10 * 2 / 255)
    assert r["psnr"].value == pytest.approx(10 * math.log10(255 ** 2 / 100))
    # Constant windows: variances and covariance are 0, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1).
    c1 = (0.01 * 255) ** 2
    assert r["ssim"].value == pytest.approx((2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1))
    assert r["l1"].std == 0 and r["l1"].details["n_pairs"] == 2


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8, generator=g)
    b = (a.int() + torch.randint(-40, 40, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ref = metrics.structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=255, channel_axis=0)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)
    psnr_ref = metrics.peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=255)
    assert paired_scores(a[None], b[None])["psnr"].value == pytest.approx(psnr_ref, abs=1e-10)


def _save(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / name)


def test_folders_are_matched_by_file_stem(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {n: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for n in ("a", "b", "c")}
    for n, arr in imgs.items():
        _save(tmp_path / "real", f"{n}.png", arr)
    # fakes: the same images under the same stems but another format and listing order ("0_..." sorts first)
    for n, arr in imgs.items():
        _save(tmp_path / "fake", f"{n}.bmp", arr)
    r = evaluate(tmp_path / "real", tmp_path / "fake", ("l1", "psnr"))
    assert r["l1"].value == 0 and r["psnr"].fingerprint["matching"] == "file stem"
    _save(tmp_path / "fake", "d.png", imgs["a"])
    with pytest.raises(DataError, match="no real counterpart") as exc:
        paired_scores(tmp_path / "real", tmp_path / "fake")
    assert "\n" not in str(exc.value) and "'d'" in str(exc.value)
    _save(tmp_path / "small", "a.png", imgs["a"][:8, :8])
    _save(tmp_path / "small", "b.png", imgs["b"])
    _save(tmp_path / "small", "c.png", imgs["c"])
    with pytest.raises(DataError, match="pair 'a'"):
        paired_scores(tmp_path / "real", tmp_path / "small")


def test_paired_input_errors():
    with pytest.raises(DataError, match="as many fake"):
        paired_scores(_const(1, n=3), _const(1, n=2))
    with pytest.raises(UsageError, match="did you mean 'psnr'"):
        paired_scores(_const(1), _const(1), metrics=("pnsr",))
    with pytest.raises(DataError, match="at least 11x11"):
        paired_scores(_const(1, size=8), _const(1, size=8), metrics=("ssim",))

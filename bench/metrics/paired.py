"""Paired scores against ground truth (maps, facades): L1, PSNR, SSIM, averaged over image pairs.

Pairs are matched by file stem when both sides are files, by position for tensors; each pair must have
one size. Conventions (recorded in each fingerprint):
- L1: mean |fake - real| with images mapped to [-1, 1] (the scale of pix2pix's L1 loss and of BicycleGAN's
  reconstruction error), i.e. 2 x MAE / 255;
- PSNR: 10 log10(255^2 / MSE) per image on uint8 values, then averaged; identical images would give
  infinity, so a pair's PSNR is capped at 100 dB (MSE floored at 255^2 x 1e-10) and `details.n_capped` counts them;
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, L 255, population
  (co)variances, averaged over the valid (fully inside) windows and the three channels. This equals
  scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=0)`, which crops the 5-pixel border its reflect-padded filter touches.
`std` is the spread over image pairs (ddof=1; 0 for one pair).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import DataError, UsageError, closest
from bench.metrics.catalog import names
from bench.metrics.images import ImageInput, LoadOptions, load_images, match_pairs
from bench.metrics.protocol import fingerprint
from bench.metrics.result import MetricResult

PAIRED = names(kind="paired")
PSNR_CAP_DB = 100.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
DATA_RANGE = 255.0


def _gaussian(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over (C,H,W), keeping only windows fully inside the image."""
    c = x.shape[0]
    x = F.conv2d(x[None], g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)[0]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = DATA_RANGE) -> float:
    """SSIM of two (3,H,W) images (uint8 or float on `data_range`), mean over channels and valid windows."""
    if a.shape != b.shape:
        raise DataError(f"SSIM compares images of one size, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise DataError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {tuple(a.shape[-2:])}")
    a, b, g = a.double(), b.double(), _gaussian()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = DATA_RANGE) -> tuple[float, bool]:
    """PSNR in dB of two images on `data_range`, capped at 100 dB; returns (value, capped)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    floor = data_range ** 2 * 10 ** (-PSNR_CAP_DB / 10)
    if mse <= floor:
        return PSNR_CAP_DB, True
    return 10 * math.log10(data_range ** 2 / mse), False


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two uint8 images on the [-1, 1] scale."""
    return float((a.double() - b.double()).abs().mean()) * 2 / DATA_RANGE


def paired_scores(real: ImageInput, fake: ImageInput, metrics: Sequence[str] = PAIRED, *,
                  batch_size: int = 50, num_workers: int = 0, convert_rgb: bool = False,
                  context: Mapping[str, Any] | None = None) -> dict[str, MetricResult]:
    """L1 / PSNR / SSIM of `fake` against the ground truth `real`, pairs matched by file stem."""
    unknown = [m for m in metrics if m not in PAIRED]
    if unknown:
        raise UsageError(f"unknown paired metric {unknown[0]!r}{closest(unknown[0], PAIRED)}; use {', '.join(PAIRED)}")
    opts = LoadOptions(allow_mixed_sizes=True, convert_rgb=convert_rgb, min_images=1)
    real_set, fake_set = match_pairs(load_images(real, "real", opts), load_images(fake, "fake", opts))
    for i, (sr, sf) in enumerate(zip(real_set.sizes, fake_set.sizes)):
        if sr != sf:
            raise DataError(f"pair {real_set.names[i]!r}: real is {sr[1]}x{sr[0]}, fake is {sf[1]}x{sf[0]}; paired "
                            "scores compare images of one size")
    scores: dict[str, list[float]] = {m: [] for m in metrics}
    capped = 0
    for rb, fb in zip(real_set.batches(batch_size, num_workers), fake_set.batches(batch_size, num_workers)):
        for r, f in zip(rb, fb):
            if "l1" in scores:
                scores["l1"].append(l1(r, f))
            if "psnr" in scores:
                value, was_capped = psnr(r, f)
                scores["psnr"].append(value)
                capped += was_capped
            if "ssim" in scores:
                scores["ssim"].append(ssim(r, f))
    conventions = {"l1": {"range": "[-1,1]", "reduction": "mean over pixels, then over pairs"},
                   "psnr": {"data_range": 255, "cap_db": PSNR_CAP_DB, "reduction": "per-image PSNR, mean over pairs"},
                   "ssim": {"window": "gaussian 11x11 sigma 1.5", "k1": SSIM_K1, "k2": SSIM_K2, "data_range": 255,
                            "covariance": "population", "border": "valid windows only (= scikit-image)"}}
    out = {}
    for name, values in scores.items():
        arr = np.asarray(values)
        details = {"n_pairs": float(arr.size)}
        if name == "psnr":
            details["n_capped"] = float(capped)
        fp = fingerprint(name, n_real=len(real_set), n_fake=len(fake_set), context=context,
                         matching="file stem" if real_set.from_files and fake_set.from_files else "position",
                         image_format=f"real {real_set.image_format}, fake {fake_set.image_format}", **conventions[name])
        out[name] = MetricResult(name, float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0, details,
                                 fingerprint=fp)
    return out

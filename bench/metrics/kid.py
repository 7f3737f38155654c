"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.

k(x, y) = (x.y / d + 1)^3. Each subset draws `subset_size` real and `subset_size` fake features without
replacement (seeded) and computes
    MMD^2_u = [sum_{i!=j} k(x_i,x_j) + sum_{i!=j} k(y_i,y_j)] / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2.
Reported like NICE-GAN: mean x 100 and std x 100 (population std, ddof=0) over the subsets.
Follows alpc91/NICE-GAN-pytorch@1b114f1:metric/fid_kid.py polynomial_mmd_averages / _mmd2_and_variance
('unbiased' estimator, 50 subsets of min(1000, n)); NICE-GAN prints the std unscaled, we scale both.
When subset_size equals both set sizes every subset is a permutation of the whole set, so std is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import UsageError
from bench.metrics.fid import as_float64

#: NICE-GAN / U-GAT-IT report KID x 100 (clean-fid and StyleGAN report x 1e3).
SCALE = 100.0


@dataclass(frozen=True)
class KIDResult:
    mean: float  # MMD^2 (unscaled)
    std: float
    subsets: int
    subset_size: int
    values: np.ndarray


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """(gamma x.y + coef0)^degree with gamma = 1/d by default (sklearn's polynomial_kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, **kernel: float) -> float:
    """Unbiased MMD^2 between two equally sized samples (diagonals of K_xx, K_yy excluded)."""
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"mmd2_unbiased needs two samples of equal size, got {x.shape[0]} and {y.shape[0]}")
    return _mmd2_from_kernels(polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel),
                              polynomial_kernel(x, y, **kernel))


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = kxx.shape[0]
    if m < 2:
        raise ValueError("MMD^2 needs at least 2 samples per set")
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


#: Sets up to this size get their full kernel matrices once (<= 200 MB each); subsets then index into them.
_FULL_GRAM_MAX = 5000


def kid(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, *, subsets: int = 50,
        subset_size: int | None = None, seed: int = 0, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0) -> KIDResult:
    """KID over `subsets` random subsets of `subset_size` (default min(1000, n_real, n_fake))."""
    x, y = as_float64(real), as_float64(fake)
    n = min(x.shape[0], y.shape[0])
    if subsets < 1:
        raise UsageError(f"kid_subsets must be >= 1, got {subsets} (--kid-subsets)")
    if subset_size is None:
        subset_size = min(1000, n)
    if subset_size > n:
        raise UsageError(f"kid_subset_size={subset_size} is larger than the smaller set ({x.shape[0]} real, "
                         f"{y.shape[0]} fake); pass --kid-subset-size {n} or less")
    if subset_size < 2:
        raise UsageError(f"KID needs subsets of at least 2 images per set, got {subset_size} (--kid-subset-size)")
    kernel = dict(degree=degree, gamma=gamma, coef0=coef0)
    full = max(x.shape[0], y.shape[0]) <= _FULL_GRAM_MAX
    if full:  # 50 subsets of the same few hundred images: compute each kernel entry once
        kxx, kyy = polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel)
        kxy = polynomial_kernel(x, y, **kernel)
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        ix = rng.choice(x.shape[0], subset_size, replace=False)
        iy = rng.choice(y.shape[0], subset_size, replace=False)
        if full:
            values[i] = _mmd2_from_kernels(kxx[np.ix_(ix, ix)], kyy[np.ix_(iy, iy)], kxy[np.ix_(ix, iy)])
        else:
            values[i] = mmd2_unbiased(x[ix], y[iy], **kernel)
    return KIDResult(float(values.mean()), float(values.std()), subsets, subset_size, values)

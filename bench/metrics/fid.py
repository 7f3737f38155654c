"""Fréchet Inception Distance from pool3 features: float64 statistics, eigenvalue trace, no scipy `sqrtm`.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The last trace is the sum of the square roots
of the eigenvalues of S1 S2, which are real and >= 0 because they equal those of the symmetric PSD matrix
S1^(1/2) S2 S1^(1/2) (or L^T S2 L with S1 = L L^T). Two exact routes, picked by cost:
- from statistics: Cholesky of S1 (eigh when S1 is singular), then eigvalsh of the symmetric product
  (O(d^3), d = 2048);
- from features, when the sets are small: with centred features A1 (n1 x d), A2 (n2 x d),
  tr((S1 S2)^(1/2)) = ||A1 A2^T||_* / sqrt((n1-1)(n2-1)) (nuclear norm = sum of singular values), which
  costs O(n1 n2 min(n1, n2)): milliseconds for test sets of a few hundred images.
Neither route needs scipy, so any scipy works (pytorch-fid's `sqrtm(disp=False)` breaks on scipy >= 1.18), and
neither can produce a complex number. Statistics match pytorch-fid (`np.mean`, `np.cov(rowvar=False)`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import MetricUnavailable

log = logging.getLogger(__name__)

#: Below this many images per set the 2048-d covariance is rank-deficient and FID is biased (TTUR#4).
FULL_RANK_N = 2048


@dataclass(frozen=True)
class Stats:
    """Mean and covariance of a feature set (float64)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def as_float64(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Features as a finite float64 (N, D) array; MetricUnavailable if any value is NaN/inf."""
    arr = features.double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricUnavailable("the features contain NaN or inf (broken images or weights); FID not computed")
    return arr


def statistics(features: torch.Tensor | np.ndarray) -> Stats:
    """float64 mean and unbiased covariance, as pytorch-fid's calculate_activation_statistics."""
    arr = as_float64(features)
    if arr.shape[0] < 2:
        raise MetricUnavailable(f"FID needs at least 2 images per set, got {arr.shape[0]}")
    return Stats(arr.mean(axis=0), np.cov(arr, rowvar=False), arr.shape[0])


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    _check_eigenvalues(w)
    w = np.where(w > _rank_tol(w), w, 0.0)
    return (v * np.sqrt(w)) @ v.T


def _rank_tol(ev: np.ndarray) -> float:
    # Eigenvalues below the numerical-rank threshold are round-off of true zeros; their square roots
    # (sqrt(1e-13) ~ 3e-7 each, times ~2000 of them when N < 2048) would otherwise add up to ~1e-3.
    return float(np.abs(ev).max()) * ev.shape[0] * np.finfo(np.float64).eps


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for covariance matrices, via symmetric eigenvalues."""
    try:
        # S1 = L L^T: eig(S1 S2) = eig(L^T S2 L); one Cholesky is far cheaper than eigh(S1).
        chol = np.linalg.cholesky(sigma1)
        m = chol.T @ sigma2 @ chol
    except np.linalg.LinAlgError:  # singular S1 (N <= D): go through its PSD square root
        root = _sqrt_psd(sigma1)
        m = root @ sigma2 @ root
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    _check_eigenvalues(ev)
    ev = np.where(ev > _rank_tol(ev), ev, 0.0)
    return float(np.sqrt(ev).sum())


def _check_eigenvalues(ev: np.ndarray) -> None:
    # Round-off makes zero eigenvalues slightly negative; a clearly negative one means a broken covariance.
    scale = max(float(np.abs(ev).max()), 1e-300)
    if ev.min() < -1e-6 * scale:
        raise MetricUnavailable(f"covariance product has a negative eigenvalue {ev.min():.3g} (max {scale:.3g}); "
                                "the statistics are not valid covariances")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID from statistics; agrees with pytorch_fid.fid_score.calculate_frechet_distance."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))
    return _finite(value)


def frechet_distance_from_features(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    """FID of two feature sets, by the cheaper exact route (nuclear norm for small sets)."""
    a1, a2 = as_float64(f1), as_float64(f2)
    n1, n2, d = a1.shape[0], a2.shape[0], a1.shape[1]
    if min(n1, n2) < 2:
        raise MetricUnavailable(f"FID needs at least 2 images per set, got {n1} and {n2}")
    if a2.shape[1] != d:
        raise ValueError(f"feature dimensions differ: {d} vs {a2.shape[1]}")
    if n1 * n2 * min(n1, n2) > d ** 3:
        s1, s2 = statistics(a1), statistics(a2)
        return frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    mu1, mu2 = a1.mean(axis=0), a2.mean(axis=0)
    c1, c2 = a1 - mu1, a2 - mu2
    tr1 = float((c1 * c1).sum()) / (n1 - 1)
    tr2 = float((c2 * c2).sum()) / (n2 - 1)
    nuclear = float(np.linalg.svd(c1 @ c2.T, compute_uv=False).sum())
    diff = mu1 - mu2
    return _finite(float(diff @ diff + tr1 + tr2 - 2 * nuclear / np.sqrt((n1 - 1) * (n2 - 1))))


def _finite(value: float) -> float:
    if not np.isfinite(value):
        raise MetricUnavailable(f"FID evaluated to {value}; check the features")
    return value


def small_sample_warning(n_real: int, n_fake: int) -> str | None:
    """The warning text when a set is below 2048 images (FID biased), else None."""
    n = min(n_real, n_fake)
    if n >= FULL_RANK_N:
        return None
    return (f"FID with {n} < {FULL_RANK_N} images per set: the covariance is rank-deficient and FID is biased "
            "upwards; compare only numbers with the same N (KID is unbiased)")

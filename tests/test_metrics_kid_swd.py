"""KID (unbiased polynomial MMD^2, NICE-GAN reporting) and PGGAN-style SWD."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from bench.errors import UsageError
from bench.metrics import evaluate
from bench.metrics import kid as kid_mod
from bench.metrics import swd as swd_mod
from bench.metrics.images import load_images


# ------------------------------------------------------------------------------------------ KID
def test_kid_tiny_case_by_hand():
    # X = {(1,0), (0,1)}, Y = {(1,1), (0,0)}, d = 2, k(a,b) = (a.b/2 + 1)^3.
    # K_XX off-diagonal: x1.x2 = 0 -> 1, so sum_{i!=j} / (m(m-1)) = 2/2 = 1; K_YY likewise: 1.
    # K_XY: x1.y1 = x2.y1 = 1 -> 1.5^3 = 3.375; x1.y2 = x2.y2 = 0 -> 1; sum 8.75, 2 * 8.75 / 4 = 4.375.
    # MMD^2_u = 1 + 1 - 4.375 = -2.375 (the unbiased estimator can be negative).
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert kid_mod.mmd2_unbiased(x, y) == pytest.approx(-2.375)
    r = kid_mod.kid(x, y, subsets=3, subset_size=2)
    assert r.mean == pytest.approx(-2.375) and r.std == pytest.approx(0.0)


def test_kid_matches_the_nice_gan_formula_with_sklearn_kernel():
    sklearn_pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.5, 1, size=(30, 8))
    kxx = sklearn_pairwise.polynomial_kernel(x, degree=3, gamma=None, coef0=1)
    kyy = sklearn_pairwise.polynomial_kernel(y, degree=3, gamma=None, coef0=1)
    kxy = sklearn_pairwise.polynomial_kernel(x, y, degree=3, gamma=None, coef0=1)
    m = 30
    expected = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / m ** 2
    assert kid_mod.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(1)
    same = [kid_mod.mmd2_unbiased(rng.normal(size=(40, 16)), rng.normal(size=(40, 16))) for _ in range(40)]
    shifted = kid_mod.mmd2_unbiased(rng.normal(size=(40, 16)), rng.normal(0.7, 1, size=(40, 16)))
    mean, sem = np.mean(same), np.std(same) / np.sqrt(len(same))
    assert abs(mean) < 3 * sem  # unbiased: centred on 0, individual values of both signs
    assert min(same) < 0 < max(same)
    assert shifted > 10 * max(abs(v) for v in same)


def test_kid_subsets_are_seeded_and_sizes_checked():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 4)), rng.normal(0.2, 1, size=(40, 4))
    a = kid_mod.kid(x, y, subsets=10, seed=3)
    b = kid_mod.kid(x, y, subsets=10, seed=3)
    c = kid_mod.kid(x, y, subsets=10, seed=4)
    assert a.subset_size == 40 and np.array_equal(a.values, b.values) and not np.array_equal(a.values, c.values)
    assert a.std > 0  # the 50 reals are subsampled
    # Subset size = both set sizes: every subset is a permutation of the whole set, so std is 0 (NICE-GAN, n <= 1000).
    assert kid_mod.kid(x[:40], y, subsets=5).std == pytest.approx(0, abs=1e-15)
    with pytest.raises(UsageError, match="--kid-subset-size 40"):
        kid_mod.kid(x, y, subset_size=45)
    # The full-Gram fast path and the per-subset path agree.
    full = kid_mod.kid(x, y, subsets=5, subset_size=20, seed=0)
    try:
        kid_mod._FULL_GRAM_MAX, old = 0, kid_mod._FULL_GRAM_MAX
        slow = kid_mod.kid(x, y, subsets=5, subset_size=20, seed=0)
    finally:
        kid_mod._FULL_GRAM_MAX = old
    assert np.allclose(full.values, slow.values, rtol=1e-10)


# ------------------------------------------------------------------------------------------ SWD
def _pggan_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """The reference computation of tkarras/progressive_growing_of_gans metrics/sliced_wasserstein.py."""
    g = swd_mod.GAUSSIAN_5x5.numpy()[None, None]

    def down(m):
        return scipy.ndimage.convolve(m, g, mode="mirror")[:, :, ::2, ::2]

    def up(m):
        r = np.zeros((m.shape[0], m.shape[1], m.shape[2] * 2, m.shape[3] * 2), m.dtype)
        r[:, :, ::2, ::2] = m
        return scipy.ndimage.convolve(r, g * 4.0, mode="mirror")

    pyr = [x.astype(np.float32)]
    for _ in range(1, levels):
        pyr.append(down(pyr[-1]))
        pyr[-2] -= up(pyr[-1])
    return pyr


def test_laplacian_pyramid_matches_pggan_reference():
    x = torch.randint(0, 256, (2, 3, 32, 64), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    ours = swd_mod.laplacian_pyramid(x, 3)
    ref = _pggan_pyramid(x.numpy(), 3)
    for o, r in zip(ours, ref):
        assert o.shape == r.shape
        assert np.abs(o.numpy() - r).max() < 1e-3
    assert swd_mod.level_sizes(256, 256) == [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)]
    assert swd_mod.level_sizes(75, 150) == [(75, 150), (38, 75), (19, 38)]


def test_one_dimensional_wasserstein_equal_and_unequal_counts():
    rng = np.random.default_rng(0)
    a, b = np.sort(rng.normal(size=(30, 3)), axis=0), np.sort(rng.normal(0.3, 1, size=(30, 3)), axis=0)
    ours = swd_mod.wasserstein1_sorted(a, b)
    assert np.allclose(ours, np.abs(a - b).mean(axis=0))  # PGGAN's formula
    c = np.sort(rng.normal(0.1, 2, size=(17, 3)), axis=0)
    ours = swd_mod.wasserstein1_sorted(a, c)
    ref = [scipy.stats.wasserstein_distance(a[:, j], c[:, j]) for j in range(3)]
    assert np.allclose(ours, ref, rtol=1e-9)


def _images(seed: int, n: int = 6, size: int = 32, smooth: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 255
    if smooth:  # a different distribution: low-frequency blobs instead of noise
        x = torch.nn.functional.interpolate(x[:, :, ::8, ::8], size=(size, size), mode="bilinear", align_corners=False)
    return x.round().to(torch.uint8)


def test_swd_is_seeded_batch_independent_and_separates_distributions():
    real, same, other = _images(0, n=16), _images(1, n=16), _images(2, n=16, smooth=True)
    r1 = evaluate(real, other, ("swd",), seed=5)["swd"]
    r2 = evaluate(real, other, ("swd",), seed=5, batch_size=4)["swd"]
    r3 = evaluate(real, other, ("swd",), seed=6)["swd"]
    assert r1.value == r2.value and r1.details == r2.details
    assert r1.value != r3.value
    assert set(r1.details) == {"level_32", "level_16"} and r1.value == pytest.approx(np.mean(list(r1.details.values())))
    near = evaluate(real, same, ("swd",), seed=5)["swd"].value
    assert 0 < near < r1.value / 2
    fp = r1.fingerprint
    assert fp["seed"] == 5 and fp["nhoods_per_image"] == 128 and fp["directions"] == "4x128" and fp["scale"] == 1e3


def test_swd_allows_unequal_counts():
    r = swd_mod.swd(load_images(_images(0, n=6), "real"), load_images(_images(3, n=4, smooth=True), "fake"), seed=0)
    assert r.mean > 0 and len(r.levels) == 2


def test_swd_of_flat_images_is_finite():
    flat = torch.full((3, 3, 16, 16), 7, dtype=torch.uint8)
    r = evaluate(flat, torch.full((3, 3, 16, 16), 200, dtype=torch.uint8), ("swd",))["swd"]
    assert np.isfinite(r.value) and r.value == 0  # each set is normalised on its own, as in PGGAN

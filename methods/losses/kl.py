"""VAE pieces for the BicycleGAN family: KL to the standard normal prior and the reparameterised sample.

BicycleGAN sums the KL over batch × nz (no mean), then scales by λ_kl = 0.01:
``-0.5 · Σ(1 + log σ² − μ² − σ²)``. Follows junyanz/BicycleGAN@40b9d52:models/bicycle_gan_model.py
(backward_EG, encode).
"""

from __future__ import annotations

import torch

REDUCTIONS = ("sum", "batchmean", "none")


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) of diagonal Gaussians (N, nz).

    Args:
        reduction: "sum" over batch and nz (BicycleGAN), "batchmean" (sum over nz, mean over the batch)
            or "none" (per element).
    """
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "sum":
        return kl.sum()
    if reduction == "batchmean":
        return kl.sum() / mu.size(0)
    if reduction == "none":
        return kl
    raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) (gradients reach μ and log σ²)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu" if generator is not None else mu.device)
    return mu + eps.to(mu.device) * torch.exp(0.5 * logvar)

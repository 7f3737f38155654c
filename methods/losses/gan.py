"""Adversarial losses: lsgan, vanilla, wgangp, nonsaturating and DCLGAN's hinge.

Follows contrastive-unpaired-translation@b3ac297:models/networks.py GANLoss and
JunlinHan/DCLGAN@abb805c:models/networks.py (hinge).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("lsgan", "vanilla", "wgangp", "nonsaturating", "hinge")


def gan_loss(pred: torch.Tensor, target_is_real: bool, mode: str = "lsgan", for_generator: bool = False) -> torch.Tensor:
    """Adversarial loss of discriminator output `pred` against a real (True) or fake (False) target.

    `for_generator` only matters for hinge: DCLGAN's generator uses the saturating "real" hinge term
    ``-mean(min(D(G(x)) - 1, 0))`` (methods.md §1.5), not ``-mean(D(G(x)))``; we follow the code.
    """
    if mode == "lsgan":
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "wgangp":
        return -pred.mean() if target_is_real else pred.mean()
    if mode == "nonsaturating":
        b = pred.size(0)
        return (F.softplus(-pred) if target_is_real else F.softplus(pred)).view(b, -1).mean(dim=1)
    if mode == "hinge":
        if target_is_real:
            return -torch.clamp(pred - 1, max=0).mean()
        return -torch.clamp(-pred - 1, max=0).mean()
    raise ValueError(f"unknown gan_mode {mode!r}; valid: {', '.join(MODES)}")


def multiscale_gan_loss(preds, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Sum of `gan_loss` over the outputs of a multi-scale discriminator (a tensor or a list)."""
    if isinstance(preds, torch.Tensor):
        return gan_loss(preds, target_is_real, mode)
    return sum(gan_loss(p, target_is_real, mode) for p in preds)

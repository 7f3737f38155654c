"""SimDCL's similarity loss: L1 distance between mapped features of a real and a fake image of one domain.

    L_sim = ||H_xr(real x) - H_xf(fake x)||_1 + ||H_yf(fake y) - H_yr(real y)||_1

The paper writes both norms as sums; the official code builds `torch.nn.L1Loss('sum')`, whose first
positional argument is the legacy `size_average`, so PyTorch turns it into reduction='mean' (with a
deprecation warning): the code averages over the 64 dimensions (and the batch). `reduction` chooses.
Follows JunlinHan/DCLGAN@abb805c:models/simdcl_model.py calculate_Sim_loss_all.
"""

from __future__ import annotations

from typing import Iterable

import torch

REDUCTIONS = ("mean", "sum")


def l1_distance(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """|a - b| reduced by 'mean' (what the official code computes) or 'sum' (what the paper writes)."""
    diff = (a - b).abs()
    if reduction == "mean":
        return diff.mean()
    if reduction == "sum":
        return diff.sum()
    raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def similarity_loss(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], reduction: str = "mean") -> torch.Tensor:
    """Sum over (real, fake) pairs of one domain of their L1 distance (SimDCL's L_sim before λ_SIM)."""
    return sum(l1_distance(a, b, reduction) for a, b in pairs)

"""BYOL-style similarity loss 2 − 2·cos(q, k), as EnCo uses it between decoder and encoder patches.

Follows XiudingCai/EnCo-pytorch@0d404a7:models/enco_model.py (mse_loss, calculate_BYOL_loss).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def byol_loss(q: torch.Tensor, k: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """Per-row 2 − 2·cos(q, k) for (N, C) tensors: 0 for parallel rows, 4 for opposite ones.

    With `stop_gradient` the target `k` is detached, so no gradient reaches whatever produced it.
    """
    if stop_gradient:
        k = k.detach()
    return 2.0 - 2.0 * F.cosine_similarity(q, k, dim=-1)


def multilayer_byol_loss(feats_q: Sequence[torch.Tensor], feats_k: Sequence[torch.Tensor],
                         stop_gradient: bool = True) -> torch.Tensor:
    """Mean over layers of the mean per-patch BYOL loss (EnCo's ``sum / n_layers * 2`` over pairs)."""
    if len(feats_q) != len(feats_k) or not feats_q:
        raise ValueError(f"need as many query as key layers (got {len(feats_q)} and {len(feats_k)})")
    total = sum(byol_loss(q, k, stop_gradient).mean() for q, k in zip(feats_q, feats_k))
    return total / len(feats_q)

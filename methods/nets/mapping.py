"""SimDCL's light mapping networks (H_xr, H_xf, H_yr, H_yf): a stack of sampled patch features -> 64-d vector.

The per-layer samples of one image, each (S, nc) after the MLP head, are stacked into an
(n_layers, S, nc) "image" and mapped by `Conv3×3 s2 (no pad) -> ReLU -> global average pool ->
Linear -> ReLU -> Linear -> L2-normalise`. Keys `model.0.*`, `model.4.*`, `model.6.*` (10,688 parameters
for 4 layers) match the official MappingF.
Follows JunlinHan/DCLGAN@abb805c:models/networks.py MappingF.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from methods.nets.heads import l2_normalize


class MappingF(nn.Module):
    """Map a (B, n_layers, S, nc) stack of sampled features to L2-normalised (B, dim) vectors."""

    def __init__(self, n_layers: int = 4, dim: int = 64) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(n_layers, dim, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim),
        )

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.model(stack))


def stack_samples(pools: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Per-layer samples [(B*S, nc), ...] -> (B, n_layers, S, nc), one stack per image.

    The official code copies the layers into a CPU `zeros([n_layers, S, nc])`, which only works for batch
    size 1; stacking per image gives the same tensor there and extends it to larger batches.
    """
    sizes = {p.shape for p in pools}
    if len(sizes) != 1:
        raise ValueError(f"every layer must give the same number of samples to stack them, got {sorted(sizes)}")
    return torch.stack([p.view(batch_size, -1, p.shape[-1]) for p in pools], dim=1)

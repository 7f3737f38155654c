"""Patch sampling + MLP projection heads for contrastive losses (CUT's PatchSampleF).

The MLPs are created lazily from the first features they see (their input widths depend on the
generator's layers), as in the official code; keys are `mlp_<i>.0.weight`, `mlp_<i>.2.weight`.
Follows contrastive-unpaired-translation@b3ac297:models/networks.py PatchSampleF.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bench.precision import float32_math
from methods.nets.init import init_weights


@float32_math  # under fp16 autocast the squares of small features underflow to 0 (NaN PatchNCE)
def l2_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-7) -> torch.Tensor:
    """x / (||x||_2 + eps) along `dim` (CUT's Normalize(2))."""
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + eps)


def sample_patch_ids(n_positions: int, num_patches: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random subset of spatial positions, shared across the batch (as every official repo does)."""
    perm = torch.randperm(n_positions, generator=generator, device="cpu").to(device)
    return perm[: min(num_patches, n_positions)]


def flatten_feature(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return feat.permute(0, 2, 3, 1).flatten(1, 2)


class PatchSampleF(nn.Module):
    """Sample `num_patches` positions per layer, project each with a 2-layer MLP, L2-normalise.

    Args:
        use_mlp: False gives CUT's `sample` head (no projection).
        nc: MLP width (netF_nc, 256).
    """

    def __init__(self, use_mlp: bool = True, nc: int = 256, init_type: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        self.use_mlp = use_mlp
        self.nc = nc
        self.init_type, self.init_gain = init_type, init_gain
        self.mlp_init = False
        self.n_mlps = 0

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Create the lazy MLPs from the checkpoint's shapes first, then load (keys `mlp_<i>.*`)."""
        if self.use_mlp and not self.mlp_init:
            widths = {int(k.split(".")[0][4:]): v.shape[1] for k, v in state_dict.items() if k.endswith(".0.weight")}
            if widths:
                device = next(iter(state_dict.values())).device
                self.create_mlp([widths[i] for i in sorted(widths)], device=device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def create_mlp(self, in_channels: Sequence[int], device=None) -> None:
        for i, c in enumerate(in_channels):
            self.add_module(f"mlp_{i}", nn.Sequential(nn.Linear(c, self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc)))
        self.n_mlps = len(in_channels)
        if device is not None:
            self.to(device)
        init_weights(self, self.init_type, self.init_gain)
        self.mlp_init = True

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None):
        """Returns (list of (B*S, nc) normalised samples, list of the ids used per layer)."""
        if self.use_mlp and not self.mlp_init:
            self.create_mlp([f.shape[1] for f in feats], device=feats[0].device)
        out, ids = [], []
        for i, feat in enumerate(feats):
            flat = flatten_feature(feat)
            if num_patches > 0:
                pid = patch_ids[i] if patch_ids is not None else sample_patch_ids(flat.shape[1], num_patches, feat.device)
                x = flat[:, pid, :].flatten(0, 1)
            else:
                pid, x = torch.arange(flat.shape[1], device=feat.device), flat.flatten(0, 1)
            if self.use_mlp:
                x = self.get_submodule(f"mlp_{i}")(x)
            x = l2_normalize(x)
            if num_patches == 0:
                B, _, H, W = feat.shape
                x = x.view(B, H, W, -1).permute(0, 3, 1, 2)
            ids.append(pid)
            out.append(x)
        return out, ids

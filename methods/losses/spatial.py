"""Spatially-correlative loss (F-LSeSim): compare the self-similarity maps of source and translation.

For each of `num_patches` query positions (shared by the batch and by every image compared), a row of
similarities to the keys (the whole map, or a `patch_size` window around the query) is computed from
mean-centred features. The G loss compares the rows of source and translation (cosine of the rows with
the top quarter of the target row kept, or L1); the LSeSim head loss is an InfoNCE over rows.
Follows lyndonzheng/F-LSeSim@6ca7883:models/losses.py (PatchSim, SpatialCorrelativeLoss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.precision import float32_math

LOSS_MODES = ("cos", "l1")


def sample_query_ids(n_positions: int, num_patches: int, device) -> torch.Tensor:
    """Random query positions shared over the batch; num_patches <= 0 means every position."""
    if num_patches <= 0:
        return torch.arange(n_positions, device=device)
    perm = torch.randperm(n_positions, device="cpu").to(device)
    return perm[: min(num_patches, n_positions)]


def _window_ids(ids: torch.Tensor, height: int, width: int, patch_size: int) -> torch.Tensor:
    """(S, patch_size²) flat key positions of the window around each query, clamped inside the map."""
    row, col = ids // width, ids % width
    top = (row - patch_size // 2).clamp(min=0).clamp(max=height - patch_size)
    left = (col - patch_size // 2).clamp(min=0).clamp(max=width - patch_size)
    offs = torch.arange(patch_size, device=ids.device)
    rows = (top[:, None] + offs)[:, :, None]
    cols = (left[:, None] + offs)[:, None, :]
    return (rows * width + cols).flatten(1)


@float32_math  # tiny similarities underflow in fp16 (NaN cosines)
def patch_similarity(feat: torch.Tensor, ids: torch.Tensor, patch_size: int = 64,
                     use_norm: bool = False) -> torch.Tensor:
    """Self-similarity rows (B, S, K) of the queries `ids` of a (B, C, H, W) feature map.

    Features are centred over space, then L2-normalised per position (use_norm, similarity q·k) or
    divided by √C (similarity tanh(q·k / 10)). Keys are the whole map unless `patch_size` is smaller than
    both sides, then the patch_size×patch_size window around the query (moved inside the map at borders).
    """
    b, c, h, w = feat.shape
    feat = feat - feat.mean(dim=(2, 3), keepdim=True)
    feat = F.normalize(feat, dim=1) if use_norm else feat / math.sqrt(c)
    flat = feat.flatten(2).transpose(1, 2)  # (B, HW, C)
    query = flat[:, ids, :]  # (B, S, C)
    if patch_size < h and patch_size < w:
        keys = flat[:, _window_ids(ids, h, w, patch_size), :]  # (B, S, P², C)
        sim = torch.einsum("bsc,bskc->bsk", query, keys)
    else:
        sim = torch.bmm(query, flat.transpose(1, 2))  # (B, S, HW)
    return sim if use_norm else torch.tanh(sim / 10.0)


def top_quarter_mask(sim_tgt: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the entries of each row >= its (N//4 + 1)-th largest value.

    The official code keeps ``sim_tgt >= sorted_desc[N//4]``: the top quarter plus one entry (more with ties).
    """
    n = sim_tgt.shape[-1]
    num = n // 4
    kth = sim_tgt.sort(dim=-1, descending=True).values[..., num : num + 1]
    return sim_tgt >= kth


@float32_math  # tiny similarities underflow in fp16 (NaN cosines)
def compare_similarity(sim_src: torch.Tensor, sim_tgt: torch.Tensor, mode: str = "cos",
                       use_norm: bool = False) -> torch.Tensor:
    """Scalar distance of two (B, S, N) similarity maps, both masked to the target's top quarter.

    mode 'cos': criterion(1, cos(src_row, tgt_row)); 'l1': criterion of the rows scaled by N/(N//4).
    criterion = L1 with use_norm, SmoothL1 (beta 1) otherwise, as in the official code.
    """
    keep = top_quarter_mask(sim_tgt)
    src = torch.where(keep, sim_src, torch.zeros_like(sim_src))
    tgt = torch.where(keep, sim_tgt, torch.zeros_like(sim_tgt))
    criterion = F.l1_loss if use_norm else F.smooth_l1_loss
    if mode == "cos":
        cos = F.cosine_similarity(src, tgt, dim=-1)
        return criterion(cos, torch.ones_like(cos))
    if mode == "l1":
        n = sim_src.shape[-1]
        scale = n / max(1, n // 4)
        return criterion(scale * src, scale * tgt)
    raise ValueError(f"unknown loss_mode {mode!r}; valid: {', '.join(LOSS_MODES)}")


@float32_math  # tiny similarities underflow in fp16 (NaN cosines)
def similarity_nce(sim_src: torch.Tensor, sim_tgt: torch.Tensor, sim_other: torch.Tensor,
                   tau: float = 0.07) -> torch.Tensor:
    """LSeSim's contrastive loss: row i of src must match row i of tgt, not other rows nor the other image.

    Logits per row: [src·tgtᵀ | src·otherᵀ | tgt·otherᵀ] / tau over L2-normalised rows, target index i.
    """
    b, s, _ = sim_src.shape
    src, tgt, oth = (F.normalize(x, dim=-1) for x in (sim_src, sim_tgt, sim_other))
    logits = torch.cat([torch.bmm(src, tgt.transpose(1, 2)), torch.bmm(src, oth.transpose(1, 2)),
                        torch.bmm(tgt, oth.transpose(1, 2))], dim=-1).reshape(b * s, 3 * s) / tau
    target = torch.arange(b * s, device=sim_src.device) % s
    return F.cross_entropy(logits, target)


def spatial_correlative_loss(f_src: torch.Tensor, f_tgt: torch.Tensor, num_patches: int = 256,
                             patch_size: int = 64, mode: str = "cos", use_norm: bool = False,
                             f_other: torch.Tensor | None = None, tau: float = 0.07) -> torch.Tensor:
    """Loss of one layer: the G loss (`compare_similarity`), or the InfoNCE when `f_other` is given."""
    _, _, h, w = f_src.shape
    ids = sample_query_ids(h * w, num_patches, f_src.device)
    if num_patches <= 0:  # every query: the official code then compares against the whole map, no window
        patch_size = max(h, w)
    sim_src = patch_similarity(f_src, ids, patch_size, use_norm)
    sim_tgt = patch_similarity(f_tgt, ids, patch_size, use_norm)
    if f_other is None:
        return compare_similarity(sim_src, sim_tgt, mode, use_norm)
    return similarity_nce(sim_src, sim_tgt, patch_similarity(f_other, ids, patch_size, use_norm), tau)

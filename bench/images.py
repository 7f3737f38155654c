"""Tensor <-> image conversions and sample grids, shared by training, evaluation and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.checkpoint import atomic_write_bytes


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N,3,H,W) -> uint8, truncating like the official `tensor2im` (floor, not round).

    Follows pytorch-CycleGAN-and-pix2pix@00d5574:util/util.py tensor2im: (x + 1) / 2 * 255 then astype(uint8).
    """
    return ((x.detach().float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)


def save_png(img: torch.Tensor, path: Path) -> None:
    """Write one uint8 (3,H,W) tensor as a lossless PNG, atomically."""
    import io

    arr = img.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def grid(rows: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Stack equal-length lists of uint8 (N,3,H,W) batches as rows of one uint8 (3,H',W') image."""
    n = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[2], rows[0].shape[3]
    out = torch.full((3, len(rows) * (h + pad) + pad, n * (w + pad) + pad), 255, dtype=torch.uint8)
    for i, r in enumerate(rows):
        for j in range(r.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y:y + h, x:x + w] = r[j, :, :h, :w]
    return out

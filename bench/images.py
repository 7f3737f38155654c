"""Tensor <-> image conversions and sample grids, shared by training, evaluation and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.checkpoint import atomic_write_bytes
from bench.errors import DataError

#: PIL modes of 16-bit grayscale images (PNG, TIFF); "I" is how PIL opens some of them (values 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im: Image.Image, path) -> Image.Image:
    """Decode `im` (opened from `path`) as 8-bit RGB with its real colours; DataError naming `path` otherwise.

    PIL's own `convert("RGB")` clips 16-bit grayscale to white (a 16-bit PNG decodes 99.6 % white) and maps
    float images to black; here 16-bit values are scaled to 8 bits (v / 257, rounded), palette images go through
    RGBA (so a transparent palette entry keeps its colour), alpha is dropped as the official loaders do
    (`convert('RGB')`), CMYK is converted by PIL. Float images and 32-bit integers beyond 16 bits have no
    agreed scale and are refused.
    """
    mode = im.mode
    if mode == "RGB":
        im.load()
        return im
    if mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(im)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise DataError(f"image {path} is a 32-bit integer image with values {int(arr.min())}..{int(arr.max())}, "
                            "beyond 16 bits: bench cannot tell its scale; convert it to an 8-bit RGB image")
        gray = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(gray), mode="L").convert("RGB")
    if mode == "F":
        raise DataError(f"image {path} holds floating-point pixels (PIL mode F): bench cannot tell their scale; "
                        "convert it to an 8-bit RGB image")
    if mode in ("P", "PA"):
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


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

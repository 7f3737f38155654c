"""Image decoding and the official train/test transforms, with every random choice passed in explicitly.

Train: resize to (load, load) BICUBIC -> crop (crop, crop) at a given offset -> optional horizontal flip ->
[-1, 1]. Test: resize to (size, size) BICUBIC -> [-1, 1]. The random offset and flip come from the caller
(`draw_params` with a private generator) so that data are a pure function of (seed, epoch, index).
Follows taesungp/contrastive-unpaired-translation@b3ac297:data/base_dataset.py get_params/get_transform
(preprocess resize_and_crop). Its `__make_power_2(base=4)` step is left out: it is the identity for every
size bench's presets use (multiples of 4); for other sizes bench keeps the size asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageRef:
    """One image: a file, or the left (half=0) / right (half=1) half of a side-by-side A|B file."""

    path: str
    half: int | None = None


@dataclass(frozen=True)
class CropFlip:
    """The random part of one training transform."""

    x: int
    y: int
    flip: bool


def load_image(ref: ImageRef) -> Image.Image:
    """Decode `ref` as RGB (16-bit/grayscale/RGBA/palette/CMYK converted: `bench.images.to_rgb`); DataError naming
    the file on failure."""
    from bench.images import to_rgb

    try:
        with Image.open(ref.path) as im:
            img = to_rgb(im, ref.path)  # decodes fully, so truncation surfaces here
    except FileNotFoundError:
        raise DataError(f"image {ref.path} disappeared; the dataset folder changed while in use") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot decode image {ref.path}: {exc}; replace or delete the file") from None
    if ref.half is None:
        return img
    w, h = img.size
    if w % 2:  # the layout (width = aspect x height) is checked for the whole split when it is opened
        raise DataError(f"aligned image {ref.path} is {w}x{h}: {pair_problem(w, h)}")
    half = w // 2
    return img.crop((0, 0, half, h)) if ref.half == 0 else img.crop((half, 0, w, h))


#: Width / height of a side-by-side A|B file: two square images (pix2pix's AB format).
PAIR_ASPECT = 2.0


def pair_problem(w: int, h: int, aspect: float = PAIR_ASPECT) -> str | None:
    """Why a w x h file cannot be a side-by-side pair of the declared layout (width = aspect x height), or None."""
    if w % 2:
        return ("odd width, so its A|B halves differ in size; aligned files must be two equal images side by side "
                f"(width = {aspect:g} x height)")
    if w != round(aspect * h):
        return (f"not a side-by-side pair (width = {aspect:g} x height expected, e.g. {round(aspect * h)}x{h}); "
                "replace it or remove it from the aligned folder")
    return None


def draw_params(rng: np.random.Generator, load_size: int, crop_size: int) -> CropFlip:
    """Draw a crop offset in [0, load - crop] and a flip bit (always both, so the stream never shifts)."""
    room = load_size - crop_size
    x = int(rng.integers(0, room + 1))
    y = int(rng.integers(0, room + 1))
    flip = bool(rng.random() < 0.5)
    return CropFlip(x, y, flip)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 (3, H, W) in [-1, 1], bit-identical to ToTensor + Normalize(0.5, 0.5)."""
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    return t.float().div(255).sub(0.5).div(0.5)


def train_transform(img: Image.Image, load_size: int, crop_size: int, params: CropFlip, flip: bool) -> torch.Tensor:
    """Resize to (load, load) bicubic, crop at params, flip if `flip` and params.flip, to [-1, 1]."""
    img = img.resize((load_size, load_size), Image.BICUBIC)
    img = img.crop((params.x, params.y, params.x + crop_size, params.y + crop_size))
    if flip and params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(img)


def test_transform(img: Image.Image, size: int) -> torch.Tensor:
    """Resize to (size, size) bicubic, to [-1, 1] (the official test path: load = crop = size, no flip)."""
    return to_tensor(img.resize((size, size), Image.BICUBIC))


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")

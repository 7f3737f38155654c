"""Image decoding and the official train/test transforms, with every random choice passed in explicitly.

The official loaders differ per code base; a `Pipeline` names the rule a method's loader follows:
- CycleGAN/pix2pix/CUT family/BicycleGAN (`resize_and_crop`): resize to (load, load) BICUBIC -> crop
  (crop, crop) at an offset -> optional horizontal flip; test: resize to (size, size) BICUBIC.
  Follows taesungp/contrastive-unpaired-translation@b3ac297:data/base_dataset.py get_params/get_transform.
  Its `__make_power_2(base=4)` step is left out: it is the identity for every size bench's presets use
  (multiples of 4); for other sizes bench keeps the size asked for.
- NICE-GAN: flip first, then torchvision's `Resize((load, load))` (default BILINEAR) -> RandomCrop(crop);
  test `Resize((size, size))` BILINEAR. Follows alpc91/NICE-GAN-pytorch@1b114f1:NICE.py build_model.
- MUNIT: flip first, then `Resize(load)`: the *shorter* side to `load` keeping the aspect ratio (BILINEAR)
  -> RandomCrop(crop); test `Resize(load)` only (no crop). Follows NVlabs/MUNIT@a82e222:utils.py
  get_data_loader_folder and test.py.
- LSeSim `--augment`: ColorJitter(0.5, 0.5, 0.5, 0.3) on the 8-bit training crop (after the flip), as extra
  images beside the plain ones. Follows lyndonzheng/F-LSeSim@6ca7883:data/unaligned_dataset.py.

The random offset, flip and jitter factors come from the caller (`draw_params` / `draw_jitter` with a
private generator) so that data are a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.errors import DataError
from bench.pipeline import ASPECTS, DEFAULT_PIPELINE, FILTER_NAMES, SAMPLINGS, Pipeline  # noqa: F401  (re-exported)

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


#: Resize filters by config name (PIL's; torchvision's Resize on PIL images calls PIL with these).
FILTERS = {name: getattr(Image, name.upper()) for name in FILTER_NAMES}


def resized_size(size: tuple[int, int], load_size: int, aspect: str = "square") -> tuple[int, int]:
    """(width, height) after the resize step: (load, load), or the shorter side to load (torchvision's rule)."""
    if aspect == "square":
        return load_size, load_size
    w, h = size
    if w <= h:
        return load_size, int(load_size * h / w)
    return int(load_size * w / h), load_size


def draw_params(rng: np.random.Generator, load_size: int | tuple[int, int], crop_size: int) -> CropFlip:
    """Draw a crop offset in [0, size - crop] per axis and a flip bit (always all three, so the stream never
    shifts). `load_size` is the resized (width, height), or one side of a square."""
    w, h = (load_size, load_size) if isinstance(load_size, (int, np.integer)) else load_size
    x = int(rng.integers(0, w - crop_size + 1))
    y = int(rng.integers(0, h - crop_size + 1))
    flip = bool(rng.random() < 0.5)
    return CropFlip(x, y, flip)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 (3, H, W) in [-1, 1], bit-identical to ToTensor + Normalize(0.5, 0.5)."""
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    return t.float().div(255).sub(0.5).div(0.5)


def train_crop(img: Image.Image, load_size: int, crop_size: int, params: CropFlip, flip: bool,
               pipeline: Pipeline = DEFAULT_PIPELINE) -> Image.Image:
    """The 8-bit training crop: resize, crop at params, flip if `flip` and params.flip, in the pipeline's order."""
    flipped = flip and params.flip
    if flipped and pipeline.flip_first:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = img.resize(resized_size(img.size, load_size, pipeline.aspect), FILTERS[pipeline.filter])
    img = img.crop((params.x, params.y, params.x + crop_size, params.y + crop_size))
    if flipped and not pipeline.flip_first:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def train_transform(img: Image.Image, load_size: int, crop_size: int, params: CropFlip, flip: bool,
                    pipeline: Pipeline = DEFAULT_PIPELINE) -> torch.Tensor:
    """`train_crop` as a tensor in [-1, 1]."""
    return to_tensor(train_crop(img, load_size, crop_size, params, flip, pipeline))


def test_transform(img: Image.Image, size: int, pipeline: Pipeline = DEFAULT_PIPELINE, crop: int = 0) -> torch.Tensor:
    """The official test path: resize (square to (size, size), or the shorter side to size) with the pipeline's
    filter, then a centre crop of `crop` when 0 < crop < size (BicycleGAN's test scripts), to [-1, 1]."""
    img = img.resize(resized_size(img.size, size, pipeline.aspect), FILTERS[pipeline.filter])
    if 0 < crop and (crop < img.size[0] or crop < img.size[1]):
        w, h = img.size
        left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
    return to_tensor(img)


@dataclass(frozen=True)
class Jitter:
    """One draw of LSeSim's ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3)."""

    order: tuple[int, ...]
    brightness: float
    contrast: float
    saturation: float
    hue: float


#: (brightness, contrast, saturation, hue) ranges of F-LSeSim's `--augment` ColorJitter.
JITTER = (0.5, 0.5, 0.5, 0.3)


def draw_jitter(rng: np.random.Generator) -> Jitter:
    """Order of the four ops and their factors, drawn like torchvision's ColorJitter.get_params."""
    b, c, s, h = JITTER
    order = tuple(int(i) for i in rng.permutation(4))
    return Jitter(order, float(rng.uniform(1 - b, 1 + b)), float(rng.uniform(1 - c, 1 + c)),
                  float(rng.uniform(1 - s, 1 + s)), float(rng.uniform(-h, h)))


def color_jitter(img: Image.Image, jitter: Jitter) -> Image.Image:
    """Apply a drawn jitter to an 8-bit image with torchvision's PIL functional ops (ColorJitter.forward)."""
    from torchvision.transforms import functional as TF

    ops = (lambda im: TF.adjust_brightness(im, jitter.brightness), lambda im: TF.adjust_contrast(im, jitter.contrast),
           lambda im: TF.adjust_saturation(im, jitter.saturation), lambda im: TF.adjust_hue(im, jitter.hue))
    for i in jitter.order:
        img = ops[i](img)
    return img


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")

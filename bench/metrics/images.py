"""Metric inputs: a folder, a list of image files or a uint8 tensor, checked once and read in batches.

Bad input gets one line naming the file and what to do (issue: empty folder, non-image files, unreadable
images, grayscale/RGBA images, mixed sizes, fewer than 2 images):
- empty folder, a folder holding non-image files, a missing path: DataError (hidden dot-files are ignored);
- a file PIL cannot identify or decode (also truncated files, found while decoding): DataError;
- grayscale, RGBA, palette, CMYK or 16-bit images: DataError, unless `convert_rgb=True` (CLI --convert-rgb)
  converts them as the data loaders do (`bench.images.to_rgb`: like pytorch-fid's silent `.convert("RGB")`, alpha
  dropped, except that 16-bit images are scaled instead of clipped to white) and logs a warning;
- mixed sizes inside one set: DataError unless `allow_mixed_sizes=True` (CLI --allow-mixed-sizes); FID/KID
  resize every image to 299 so they cope, SWD and paired scores then still need one size;
- fewer than `min_images` (2 for distribution metrics, 1 for paired scores): DataError.
Images are decoded with PIL into uint8 RGB, the same pixels pytorch-fid feeds its network.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.errors import DataError, UsageError
from bench.images import to_rgb
from bench.metrics.protocol import sha256_bytes, sha256_file

log = logging.getLogger(__name__)

#: pytorch-fid's IMAGE_EXTENSIONS, matched case-insensitively (pytorch-fid itself skips upper-case names).
IMAGE_EXTENSIONS = frozenset({"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"})

ImageInput = Union[str, Path, Sequence[Union[str, Path]], torch.Tensor]

_MODE_NAMES = {"L": "grayscale", "LA": "grayscale+alpha", "1": "1-bit", "P": "palette", "PA": "palette+alpha",
               "RGBA": "RGBA", "RGBa": "RGBA", "CMYK": "CMYK", "I": "32-bit integer", "I;16": "16-bit",
               "F": "float", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV"}


@dataclass(frozen=True)
class LoadOptions:
    """How strict reading is (see the module docstring)."""

    allow_mixed_sizes: bool = False
    convert_rgb: bool = False
    #: 2 for distribution metrics (a covariance needs 2 samples), 1 for paired scores.
    min_images: int = 2


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A checked set of RGB images; `paths` for files, `tensor` for an in-memory uint8 batch."""

    label: str
    source: str
    paths: tuple[Path, ...] | None
    tensor: torch.Tensor | None
    #: (height, width) of every image, in order.
    sizes: tuple[tuple[int, int], ...]
    image_format: str
    options: LoadOptions = field(default_factory=LoadOptions)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def from_files(self) -> bool:
        return self.paths is not None

    @property
    def size(self) -> tuple[int, int] | None:
        """The common (height, width), or None for mixed sizes."""
        return self.sizes[0] if len(set(self.sizes)) == 1 else None

    @property
    def names(self) -> list[str]:
        """File stems (paired matching); "0", "1", ... for a tensor."""
        if self.paths is None:
            return [str(i) for i in range(len(self))]
        return [p.stem for p in self.paths]

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the images' bytes in order: the cache identity of this set (names do not matter)."""
        if self.paths is not None:
            parts = [sha256_file(p) for p in self.paths]
            return sha256_bytes(("files:" + ",".join(parts)).encode())
        t = self.tensor.contiguous()
        return sha256_bytes(f"tensor:{tuple(t.shape)}:".encode() + t.numpy().tobytes())

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        """The images at `indices`, in that order (paired matching)."""
        idx = list(indices)
        return ImageSet(self.label, self.source, None if self.paths is None else tuple(self.paths[i] for i in idx),
                        None if self.tensor is None else self.tensor[idx], tuple(self.sizes[i] for i in idx),
                        self.image_format, self.options)

    def batches(self, batch_size: int, num_workers: int = 0) -> Iterator[list[torch.Tensor]]:
        """Yield lists of uint8 (3,H,W) tensors in order, `batch_size` at a time."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if self.tensor is not None:
            for start in range(0, len(self), batch_size):
                yield list(self.tensor[start:start + batch_size])
            return
        if num_workers > 0:
            yield from self._process_batches(batch_size, num_workers)
        else:
            yield from self._thread_batches(batch_size)

    def _thread_batches(self, batch_size: int) -> Iterator[list[torch.Tensor]]:
        # PIL releases the GIL while decoding, so a few threads overlap decoding with the network's forward.
        # At most two batches are decoded ahead, so memory stays bounded for large folders.
        threads = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-decode") as pool:
            pending: deque = deque()
            nxt = 0
            batch: list[torch.Tensor] = []
            while nxt < len(self) or pending:
                while nxt < len(self) and len(pending) < 2 * batch_size:
                    pending.append(pool.submit(decode_image, self.paths[nxt], self.options.convert_rgb))
                    nxt += 1
                batch.append(pending.popleft().result())
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def _process_batches(self, batch_size: int, num_workers: int) -> Iterator[list[torch.Tensor]]:
        loader = torch.utils.data.DataLoader(_FileDataset(self.paths, self.options.convert_rgb), batch_size=batch_size,
                                             shuffle=False, num_workers=num_workers, collate_fn=list)
        for items in loader:
            batch = []
            for item in items:
                if isinstance(item, str):  # an error message from a worker: one line, not a worker traceback
                    raise DataError(item)
                batch.append(item)
            yield batch


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], convert_rgb: bool) -> None:
        self.paths, self.convert_rgb = list(paths), convert_rgb

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return decode_image(self.paths[i], self.convert_rgb)
        except DataError as exc:
            return str(exc)


def decode_image(path: Path, convert_rgb: bool = False) -> torch.Tensor:
    """One image file -> uint8 (3,H,W) RGB tensor; a DataError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                if not convert_rgb:
                    raise DataError(_mode_message(path, im.mode))
                im = to_rgb(im, path)  # 16-bit scaled, not clipped to white as PIL's convert("RGB") does
            else:
                im.load()
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path} ({exc}); re-save it or remove it from the folder") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _mode_message(path: Path, mode: str, count: int = 1) -> str:
    others = f" (and {count - 1} more)" if count > 1 else ""
    return (f"{path}{others} is a {_MODE_NAMES.get(mode, mode)} image (PIL mode {mode}); metrics need RGB: convert "
            "the images to RGB or pass --convert-rgb (convert_rgb=True) to convert them while reading")


def load_images(x: ImageInput, label: str, options: LoadOptions = LoadOptions()) -> ImageSet:
    """Check an input (folder, list of files, uint8 tensor) and describe it; the pixels are read later."""
    if isinstance(x, ImageSet):
        return x
    if isinstance(x, torch.Tensor):
        return _from_tensor(x, label, options)
    if isinstance(x, (str, Path)):
        path = Path(x)
        if not path.exists():
            raise DataError(f"{label} images: {path} does not exist")
        if not path.is_dir():
            raise DataError(f"{label} images: {path} is a file; give a folder of images (or a list of files)")
        files, source = _scan_folder(path, label), str(path)
    elif isinstance(x, (list, tuple)):
        files = [Path(p) for p in x]
        for p in files:
            if not p.is_file():
                raise DataError(f"{label} images: {p} does not exist")
            if p.suffix.lower().lstrip(".") not in IMAGE_EXTENSIONS:
                raise DataError(f"{label} images: {p} is not an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        source = f"{len(files)} files" + (f" in {files[0].parent}" if files else "")
    else:
        raise UsageError(f"{label} images: expected a folder, a list of image files or a uint8 tensor (N,3,H,W); "
                         f"got {type(x).__name__}")
    return _from_files(files, label, source, options)


def _scan_folder(folder: Path, label: str) -> list[Path]:
    images, others, subdirs = [], [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue  # .DS_Store, editor swap files, our own temp files
        if entry.is_dir():
            subdirs.append(entry.name)
        elif entry.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
            images.append(entry)
        else:
            others.append(entry.name)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise DataError(f"{label} images: {folder} holds {len(others)} non-image file(s) ({shown}); keep only images "
                        f"({'/'.join(sorted(IMAGE_EXTENSIONS))}) in the folder")
    if not images:
        hint = f" (it has subfolders {', '.join(subdirs[:3])}: point at one of them)" if subdirs else ""
        raise DataError(f"{label} images: {folder} has no images{hint}")
    return images


def _from_files(files: list[Path], label: str, source: str, options: LoadOptions) -> ImageSet:
    sizes, odd_modes = [], []
    for p in files:
        try:
            with Image.open(p) as im:  # header only: cheap
                sizes.append((im.height, im.width))
                if im.mode != "RGB":
                    odd_modes.append((p, im.mode))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{label} images: cannot read {p} ({exc}); re-save it or remove it") from None
    if odd_modes:
        if not options.convert_rgb:
            raise DataError(f"{label} images: " + _mode_message(odd_modes[0][0], odd_modes[0][1], len(odd_modes)))
        log.warning("%s images: converting %d non-RGB image(s) to RGB (e.g. %s, mode %s)", label, len(odd_modes),
                    odd_modes[0][0], odd_modes[0][1])
    _check_count_and_sizes(label, source, sizes, [str(p.name) for p in files], options)
    fmt = "+".join(sorted({p.suffix.lower().lstrip(".").replace("jpeg", "jpg") for p in files}))
    return ImageSet(label, source, tuple(files), None, tuple(sizes), fmt, options)


def _from_tensor(x: torch.Tensor, label: str, options: LoadOptions) -> ImageSet:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise UsageError(f"{label} images: expected a uint8 tensor (N,3,H,W), got {x.dtype} {tuple(x.shape)}; "
                         "convert [-1,1] floats with bench.images.to_uint8")
    x = x.detach().cpu()
    sizes = [(int(x.shape[2]), int(x.shape[3]))] * int(x.shape[0])
    _check_count_and_sizes(label, "tensor", sizes, [], options)
    return ImageSet(label, f"uint8 tensor {tuple(x.shape)}", None, x, tuple(sizes), "uint8 tensor", options)


def _check_count_and_sizes(label: str, source: str, sizes: list[tuple[int, int]], names: list[str],
                           options: LoadOptions) -> None:
    if len(sizes) < options.min_images:
        raise DataError(f"{label} images: {source} has {len(sizes)} image(s); this metric needs at least "
                        f"{options.min_images}")
    distinct = sorted(set(sizes))
    if len(distinct) > 1 and not options.allow_mixed_sizes:
        examples = []
        for size in distinct[:2]:
            i = sizes.index(size)
            examples.append(f"{size[1]}x{size[0]}" + (f" ({names[i]})" if names else ""))
        raise DataError(f"{label} images: {source} mixes {len(distinct)} sizes ({', '.join(examples)}, ...); resize "
                        "them to one size or pass --allow-mixed-sizes (allow_mixed_sizes=True)")


def uniform_chunks(images: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Stack consecutive images of equal size into (B,3,H,W) batches, keeping order (mixed-size sets)."""
    start = 0
    for i in range(1, len(images) + 1):
        if i == len(images) or images[i].shape != images[start].shape:
            yield torch.stack(images[start:i])
            start = i


def match_pairs(real: ImageSet, fake: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Align two sets for paired scores: by file stem when both are files, else by position."""
    if real.from_files and fake.from_files:
        for s in (real, fake):
            seen: set[str] = set()
            dup = next((n for n in s.names if n in seen or seen.add(n)), None)
            if dup is not None:
                raise DataError(f"{s.label} images: two files are named {dup!r} (different extensions); paired scores "
                                "match files by name, keep one")
        rn, fn = real.names, fake.names
        if set(rn) != set(fn):
            no_fake, no_real = sorted(set(rn) - set(fn)), sorted(set(fn) - set(rn))
            raise DataError(f"paired scores match files by name: {len(no_fake)} {real.label} image(s) have no "
                            f"{fake.label} counterpart (e.g. {no_fake[:2]}) and {len(no_real)} {fake.label} image(s) "
                            f"have no {real.label} counterpart (e.g. {no_real[:2]}); use the same file names")
        order = {n: i for i, n in enumerate(fn)}
        return real, fake.subset([order[n] for n in rn])
    if len(real) != len(fake):
        raise DataError(f"paired scores need as many {fake.label} as {real.label} images, got {len(fake)} and "
                        f"{len(real)}")
    return real, fake

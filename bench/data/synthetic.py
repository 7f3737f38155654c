"""The built-in `toy` dataset: the same random scenes drawn as circles (domain A) and as squares (domain B).

A scene is 1-3 shapes with a centre, a radius and a colour from a fixed palette, drawn in order. Domain
"circles" draws each shape as a filled disc on navy; domain "squares" draws the same shape as the filled
square circumscribing that disc on sand. The mapping A -> B is therefore real and learnable (background
colour swap + disc -> square), and exact pairs exist.

Files (all 64x64 per domain, PNG), written once under one root:
- unaligned form: trainA/ (scenes 0-31 as circles), trainB/ (scenes 32-63 as squares: other scenes, so
  unpaired training is really unpaired), testA/ and testB/ (scenes 64-79, the same scenes in both, so
  unpaired methods can also be scored against ground truth);
- aligned form: train/ (scenes 0-31) and test/ (scenes 64-79), circles|squares side by side (128x64).

Generation is deterministic to the byte on every machine: scenes come from numpy's PCG64 with a fixed seed,
shapes are rasterised with integer arithmetic, and the PNGs are written by `png_bytes` with uncompressed
("stored") deflate blocks, so no zlib version can change the output. Bump VERSION when anything changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import DataError

log = logging.getLogger(__name__)

VERSION = "toy-v1"
MARKER = ".bench-toy"
SEED = 20240611
SIZE = 64
N_TRAIN = 32
N_TEST = 16

BG_A = (24, 28, 72)  # navy
BG_B = (222, 205, 160)  # sand
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
)

TRAIN_A = range(0, N_TRAIN)
TRAIN_B = range(N_TRAIN, 2 * N_TRAIN)
TEST = range(2 * N_TRAIN, 2 * N_TRAIN + N_TEST)


@dataclass(frozen=True)
class Shape:
    cx: int
    cy: int
    r: int
    color: tuple[int, int, int]


def scene(index: int) -> list[Shape]:
    """The shapes of scene `index` (a pure function of the index)."""
    rng = np.random.default_rng([SEED, index])
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        r = int(rng.integers(5, 13))
        cx, cy = (int(v) for v in rng.integers(r, SIZE - r, size=2))
        shapes.append(Shape(cx, cy, r, PALETTE[int(rng.integers(len(PALETTE)))]))
    return shapes


def render(shapes: list[Shape], kind: str) -> np.ndarray:
    """Draw `shapes` as 'circles' (on navy) or 'squares' (on sand); uint8 (SIZE, SIZE, 3)."""
    img = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    img[:] = BG_A if kind == "circles" else BG_B
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for s in shapes:
        if kind == "circles":
            mask = (x - s.cx) ** 2 + (y - s.cy) ** 2 <= s.r * s.r
        else:
            mask = (np.abs(x - s.cx) <= s.r) & (np.abs(y - s.cy) <= s.r)
        img[mask] = s.color
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """Encode uint8 (H, W, 3) as an RGB PNG with stored deflate blocks (identical bytes everywhere)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(h))  # filter type 0 per row
    blocks = []
    for start in range(0, len(raw), 65535):
        chunk = raw[start:start + 65535]
        final = 1 if start + 65535 >= len(raw) else 0
        blocks.append(struct.pack("<BHH", final, len(chunk), len(chunk) ^ 0xFFFF) + chunk)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def write_toy(root: Path) -> None:
    """Write every toy file under `root` (which must not hold an older toy set)."""
    root = Path(root)
    for folder in ("trainA", "trainB", "testA", "testB", "train", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def put(path: Path, img: np.ndarray) -> None:
        path.write_bytes(png_bytes(img))

    for i in TRAIN_A:
        put(root / "trainA" / f"{i:03d}.png", render(scene(i), "circles"))
    for i in TRAIN_B:
        put(root / "trainB" / f"{i:03d}.png", render(scene(i), "squares"))
    for folder, indices in (("train", TRAIN_A), ("test", TEST)):
        for i in indices:
            a, b = render(scene(i), "circles"), render(scene(i), "squares")
            put(root / folder / f"{i:03d}.png", np.concatenate([a, b], axis=1))
            if folder == "test":
                put(root / "testA" / f"{i:03d}.png", a)
                put(root / "testB" / f"{i:03d}.png", b)
    (root / MARKER).write_text(VERSION + "\n")


def is_current(root: Path) -> bool:
    """True when `root` holds the toy set of this VERSION."""
    marker = Path(root) / MARKER
    return marker.is_file() and marker.read_text().strip() == VERSION


def ensure_toy(root: Path) -> Path:
    """Generate the toy set at `root` unless it is already there; returns `root`.

    A non-empty folder without the marker is taken as the user's own data in the toy layout and left alone.
    Generation writes to a temporary sibling and renames it into place, so concurrent runs never see a
    half-written set.
    """
    root = Path(root)
    if is_current(root):
        return root
    if root.is_dir() and not (root / MARKER).exists() and any(root.iterdir()):
        log.info("toy: using the existing folder %s as is (no %s marker)", root, MARKER)
        return root
    if root.exists() and not root.is_dir():
        raise DataError(f"toy dataset root {root} is a file, not a folder; pass another --data-root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = root.parent / f".{root.name}.tmp-{tag}"
    write_toy(tmp)
    old = None
    try:
        if root.exists():  # stale version or empty folder: move it aside, then swap in the new set
            old = root.parent / f".{root.name}.old-{tag}"
            os.rename(root, old)
        os.rename(tmp, root)
        log.info("toy: generated %s at %s", VERSION, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_current(root):  # not a lost race with another process: a real failure
            raise DataError(f"could not write the toy dataset to {root}; check permissions or pass --data-root")
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return root

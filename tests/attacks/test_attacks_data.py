"""Attacks with bad data: corrupt and truncated files, unusual pixel formats, A|B files that are not pairs,
empty and unreadable folders; through `bench data check`, the loaders, `bench run` and `bench eval`."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attack_kit import assert_clean, assert_intact, assert_refused, snapshot, tiny_run_argv
from bench.data.synthetic import png_bytes


def _rgb(seed: int, w: int = 16, h: int = 16) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def unpaired(root: Path, n: int = 2) -> Path:
    """A miniature horse2zebra in the official layout."""
    for i, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        (root / folder).mkdir(parents=True)
        for j in range(n):
            (root / folder / f"{j:02d}.png").write_bytes(_rgb(10 * i + j))
    return root


def aligned(root: Path, n: int = 2) -> Path:
    """A miniature facades: side-by-side photo|label files (32x16)."""
    for i, folder in enumerate(("train", "test")):
        (root / folder).mkdir(parents=True)
        for j in range(n):
            (root / folder / f"{j:02d}.png").write_bytes(_rgb(10 * i + j, w=32, h=16))
    return root


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _palette(transparent: bool) -> bytes:
    img = Image.new("P", (16, 16), 3)
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * 756)
    return _save(img, "PNG", **({"transparency": 3} if transparent else {}))


def _bomb() -> bytes:
    """A valid PNG header declaring 40000x40000 pixels (a decompression bomb), with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------ pixel formats
#: name -> (file name, bytes, the RGB value every pixel must decode to)
CONVERTIBLE = {
    "16-bit grayscale PNG": ("g16.png", lambda: _save(Image.fromarray(np.full((16, 16), 128 * 257, np.uint16)), "PNG"),
                             (128, 128, 128)),
    "16-bit grayscale PNG, full white": ("w16.png", lambda: _save(Image.fromarray(np.full((16, 16), 65535, np.uint16)),
                                                                  "PNG"), (255, 255, 255)),
    "16-bit grayscale TIFF": ("g16.tif", lambda: _save(Image.fromarray(np.full((16, 16), 64 * 257, np.uint16)), "TIFF"),
                              (64, 64, 64)),
    "32-bit integer TIFF holding 16-bit values": (
        "i32.tif", lambda: _save(Image.fromarray(np.full((16, 16), 200 * 257, np.int32)), "TIFF"), (200, 200, 200)),
    "palette PNG": ("p.png", lambda: _palette(False), (200, 100, 50)),
    "palette PNG with transparency": ("pt.png", lambda: _palette(True), (200, 100, 50)),
    "grayscale+alpha PNG": ("la.png", lambda: _save(Image.new("LA", (16, 16), (100, 50)), "PNG"), (100, 100, 100)),
    "RGBA PNG": ("rgba.png", lambda: _save(Image.new("RGBA", (16, 16), (10, 20, 30, 0)), "PNG"), (10, 20, 30)),
    "CMYK TIFF": ("cmyk.tif", lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"), (255, 0, 0)),
    "CMYK JPEG": ("cmyk.jpg", lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100),
                  (255, 0, 0)),
    "1-bit PNG": ("bw.png", lambda: _save(Image.new("1", (16, 16), 1), "PNG"), (255, 255, 255)),
}

REFUSED_FORMATS = {
    "32-bit integer TIFF beyond 16 bits": ("big.tif", lambda: _save(Image.fromarray(np.full((16, 16), 300000, np.int32)),
                                                                    "TIFF")),
    "float TIFF": ("f.tif", lambda: _save(Image.fromarray(np.full((16, 16), 0.5, np.float32)), "TIFF")),
}


@pytest.mark.parametrize("case", list(CONVERTIBLE))
def test_unusual_pixel_formats_decode_to_the_right_colour(bench, tmp_path, case):
    from bench.data.transforms import ImageRef, load_image

    name, make, rgb = CONVERTIBLE[case]
    root = unpaired(tmp_path / "h2z")
    path = root / "trainA" / name
    path.write_bytes(make())
    pixels = np.asarray(load_image(ImageRef(str(path))))
    tolerance = 2 if name.endswith(".jpg") else 0
    assert np.abs(pixels.astype(int) - rgb).max() <= tolerance, (case, pixels[0, 0])
    assert_clean(bench("data", "check", "horse2zebra", "--root", root), 0)


@pytest.mark.parametrize("case", list(REFUSED_FORMATS))
def test_pixel_formats_without_a_safe_conversion_are_refused_by_path(bench, tmp_path, case):
    name, make = REFUSED_FORMATS[case]
    root = unpaired(tmp_path / "h2z")
    (root / "trainA" / name).write_bytes(make())
    assert_refused(bench("data", "check", "horse2zebra", "--root", root), 1, str(root / "trainA" / name))


def test_metrics_read_16_bit_images_with_their_real_values(bench, tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    for i in range(2):
        (real / f"{i}.png").write_bytes(_save(Image.fromarray(np.full((16, 16), 128 * 257, np.uint16)), "PNG"))
        (fake / f"{i}.png").write_bytes(png_bytes(np.full((16, 16, 3), 128, np.uint8)))
    res = bench("eval", "--real", real, "--fake", fake, "--metrics", "l1", "--convert-rgb", "--json", tmp_path / "s.json")
    assert_clean(res, 0)
    import json

    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["l1"]["value"] == 0.0


# ------------------------------------------------------------------------------------------ broken files
BROKEN = {
    "random bytes": ("00.png", lambda good: bytes(np.random.default_rng(0).integers(0, 256, 999, dtype=np.uint8))),
    "truncated PNG": ("00.png", lambda good: good[: len(good) // 2]),
    "truncated JPEG": ("00.jpg", lambda good: _save(Image.open(io.BytesIO(good)).convert("RGB"), "JPEG")[:300]),
    "zero bytes": ("00.jpg", lambda good: b""),
    "text named .png": ("00.png", lambda good: b"not an image at all\n"),
    "decompression bomb": ("00.png", lambda good: _bomb()),
}


#: `--quick` reads headers only: it cannot see a truncated body (the full decode, the default, does).
HEADER_VISIBLE = [c for c in BROKEN if c not in ("truncated PNG", "truncated JPEG")]


@pytest.mark.parametrize("case,quick", [(c, False) for c in BROKEN] + [(c, True) for c in HEADER_VISIBLE],
                         ids=[f"{c}-decode" for c in BROKEN] + [f"{c}-quick" for c in HEADER_VISIBLE])
def test_broken_image_files_are_named(bench, tmp_path, case, quick):
    root = unpaired(tmp_path / "h2z")
    name, make = BROKEN[case]
    good = (root / "trainA" / "00.png").read_bytes()
    (root / "trainA" / "00.png").unlink()
    (root / "trainA" / name).write_bytes(make(good))
    before = snapshot(root)
    res = bench("data", "check", "horse2zebra", "--root", root, *(["--quick"] if quick else []))
    assert_refused(res, 1, str(root / "trainA" / name))
    assert_intact(before, root)


def test_a_broken_image_stops_a_run_with_its_name(bench, tmp_path):
    root = unpaired(tmp_path / "h2z", n=1)
    (root / "trainA" / "00.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = bench(*tiny_run_argv("--data-root", str(root), dataset="horse2zebra"))
    assert_refused(res, 1, str(root / "trainA" / "00.png"))


# ------------------------------------------------------------------------------------------ folders
def _empty_train_a(root: Path) -> Path:
    for p in (root / "trainA").iterdir():
        p.unlink()
    return root / "trainA"


def _only_text(root: Path) -> Path:
    for p in (root / "trainA").iterdir():
        p.unlink()
    (root / "trainA" / "readme.txt").write_text("images were here")
    return root / "trainA"


def _no_test_b(root: Path) -> Path:
    for p in (root / "testB").iterdir():
        p.unlink()
    (root / "testB").rmdir()
    return root


FOLDERS = {"empty folder": _empty_train_a, "only non-image files": _only_text, "missing testB": _no_test_b}


@pytest.mark.parametrize("case", list(FOLDERS))
def test_bad_folders_are_named(bench, tmp_path, case):
    root = unpaired(tmp_path / "h2z")
    culprit = FOLDERS[case](root)
    assert_refused(bench("data", "check", "horse2zebra", "--root", root), 1, str(culprit))


def _unreadable(monkeypatch, folder: Path) -> None:
    """Listing `folder` fails with EACCES (chmod 000 does not stop root, who runs the CI)."""
    real_iterdir, real_scandir = Path.iterdir, __import__("os").scandir
    target = str(folder)

    def iterdir(self):
        if str(self) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_iterdir(self)

    def scandir(path="."):
        if str(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_scandir(path)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr("os.scandir", scandir)


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_unreadable_folder_is_named(bench, tmp_path, monkeypatch, command):
    root = unpaired(tmp_path / "h2z", n=1)
    _unreadable(monkeypatch, root / "trainA")
    if command == "check":
        res = bench("data", "check", "horse2zebra", "--root", root)
    else:
        res = bench(*tiny_run_argv("--data-root", str(root), dataset="horse2zebra"))
    assert_refused(res, 1, str(root / "trainA"), "permission")


def test_an_empty_folder_stops_a_run(bench, tmp_path):
    root = unpaired(tmp_path / "h2z", n=1)
    _empty_train_a(root)
    assert_refused(bench(*tiny_run_argv("--data-root", str(root), dataset="horse2zebra")), 1, str(root / "trainA"))


@pytest.mark.parametrize("case", ["a file", "missing"])
def test_a_data_root_that_is_not_a_folder(bench, tmp_path, case):
    root = tmp_path / "h2z"
    if case == "a file":
        root.write_text("not a folder")
    assert_refused(bench("data", "check", "horse2zebra", "--root", root), 1, str(root))


# ------------------------------------------------------------------------------------------ A|B pairs
NOT_PAIRS = {"square": (32, 32), "odd width": (33, 16), "portrait": (16, 32), "three wide": (48, 16),
             "almost 2:1": (30, 16)}


@pytest.mark.parametrize("quick", [False, True], ids=["decode", "quick"])
@pytest.mark.parametrize("case", list(NOT_PAIRS))
def test_aligned_files_that_are_not_side_by_side_pairs_are_refused(bench, tmp_path, case, quick):
    root = aligned(tmp_path / "facades")
    w, h = NOT_PAIRS[case]
    bad = root / "train" / "01.png"
    bad.write_bytes(_rgb(7, w=w, h=h))
    res = bench("data", "check", "facades", "--root", root, *(["--quick"] if quick else []))
    assert_refused(res, 1, str(bad), f"{w}x{h}")


def test_paired_loader_refuses_the_split_naming_the_first_bad_file(tmp_path):
    from bench.data import load_pairs
    from bench.errors import DataError

    root = aligned(tmp_path / "facades", n=3)
    for name in ("01.png", "02.png"):
        (root / "train" / name).write_bytes(_rgb(3, w=16, h=16))
    with pytest.raises(DataError, match=r"01\.png.*16x16"):
        load_pairs("facades", "train", root=root, paired=True, load_size=16, crop_size=16)


def test_a_paired_run_on_non_pairs_stops_before_training(bench, tmp_path):
    root = aligned(tmp_path / "facades")
    (root / "train" / "00.png").write_bytes(_rgb(3, w=16, h=16))
    res = bench(*tiny_run_argv("--data-root", str(root), dataset="facades", method="pix2pix"))
    assert_refused(res, 1, str(root / "train" / "00.png"))
    assert not list(Path("runs").rglob("*.pt"))


def test_a_spec_may_declare_another_pair_layout(tmp_path, monkeypatch):
    """`pair_aspect` in the dataset spec: e.g. three tiles side by side would be 3."""
    import dataclasses

    from bench.data import load_pairs, registry

    spec = dataclasses.replace(registry.get_spec("facades"), pair_aspect=1.5)
    monkeypatch.setitem(registry.DATASETS, "facades", spec)
    root = aligned(tmp_path / "facades")
    for p in (root / "train").iterdir():
        p.write_bytes(_rgb(1, w=24, h=16))
    ds = load_pairs("facades", "train", root=root, paired=True, load_size=16, crop_size=16)
    assert len(ds) == 2

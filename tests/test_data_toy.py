"""The built-in toy dataset: byte-identical generation, versioning, both layouts, and a real mapping."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data import load_pairs, resolve_root
from bench.data.synthetic import BG_A, BG_B, MARKER, N_TEST, N_TRAIN, VERSION, render, scene, write_toy

# sha256 over (relative path, bytes) of every file of toy-v1. Changing the generator must bump VERSION
# and this value together.
TOY_V1_DIGEST = "25619dcd55f631acf237b1b5aafb4ee9a6a8bcddb217aafa5c3508b9b90747a3"


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_generation_is_byte_identical_and_fast(tmp_path):
    write_toy(tmp_path / "warmup")
    t0 = time.perf_counter()
    write_toy(tmp_path / "a")
    elapsed = time.perf_counter() - t0
    write_toy(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") == TOY_V1_DIGEST
    assert elapsed < 3.0, f"toy generation took {elapsed:.2f}s"
    assert (tmp_path / "a" / MARKER).read_text().strip() == VERSION == "toy-v1"


def test_layouts_and_counts(tmp_path):
    root = resolve_root("toy")
    assert root == tmp_path / "cache" / "datasets" / "toy"
    counts = {d: len(list((root / d).glob("*.png"))) for d in ("trainA", "trainB", "testA", "testB", "train", "test")}
    assert counts == {"trainA": N_TRAIN, "trainB": N_TRAIN, "testA": N_TEST, "testB": N_TEST,
                      "train": N_TRAIN, "test": N_TEST}
    paired = load_pairs("toy", "train", paired=True, load_size=64, crop_size=64)
    unpaired = load_pairs("toy", "train", paired=False, load_size=64, crop_size=64)
    assert "/train/" in paired[0]["A_path"] and "/trainA/" in unpaired[0]["A_path"]
    # unpaired training really is unpaired: trainB holds other scenes than trainA
    assert not {p.name for p in (root / "trainA").iterdir()} & {p.name for p in (root / "trainB").iterdir()}


def test_pairs_correspond_and_domains_differ():
    root = resolve_root("toy")
    for path in sorted((root / "test").glob("*.png")):
        ab = _rgb(path)
        a, b = ab[:, :64], ab[:, 64:]
        assert np.array_equal(a, _rgb(root / "testA" / path.name))
        assert np.array_equal(b, _rgb(root / "testB" / path.name))
        fg_a = np.any(a != BG_A, axis=-1)
        fg_b = np.any(b != BG_B, axis=-1)
        assert fg_a.any() and np.all(fg_b[fg_a])  # every disc pixel lies inside its square
        assert fg_b.sum() > fg_a.sum()  # squares cover more than discs
        assert np.array_equal(a[~fg_a][0], np.array(BG_A)) and np.array_equal(b[~fg_b][0], np.array(BG_B))
        # the drawn scene is exactly the recorded one
        index = int(path.stem)
        assert np.array_equal(a, render(scene(index), "circles"))
        assert np.array_equal(b, render(scene(index), "squares"))


def test_scene_colours_carry_over():
    """Where a single shape is drawn, its disc colour in A equals its square colour in B."""
    for index in range(20):
        shapes = scene(index)
        a, b = render(shapes, "circles"), render(shapes, "squares")
        last = shapes[-1]  # drawn on top in both domains
        assert tuple(a[last.cy, last.cx]) == tuple(b[last.cy, last.cx]) == last.color


def test_old_version_is_regenerated(tmp_path):
    root = resolve_root("toy")
    victim = root / "trainA" / "000.png"
    victim.write_bytes(b"stale")
    (root / MARKER).write_text("toy-v0\n")
    assert resolve_root("toy") == root
    assert _digest(root) == TOY_V1_DIGEST
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".toy")]  # no temp leftovers


def test_explicit_root_generates_there_and_user_folders_are_left_alone(tmp_path):
    target = tmp_path / "mine" / "toy"
    assert resolve_root("toy", target) == target and (target / MARKER).is_file()
    user = tmp_path / "user_toy"
    (user / "trainA").mkdir(parents=True)
    (user / "trainA" / "x.png").write_bytes(b"")
    assert resolve_root("toy", user) == user and not (user / MARKER).exists()

"""Dataset loaders: determinism, transforms, paired alignment, fixtures as-is, and every bad-data case."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import get_spec, load_domain, load_pairs, resolve_root
from bench.data.layout import flat_split
from bench.data.transforms import CropFlip, ImageRef, load_image, train_transform
from bench.data.transforms import test_transform as eval_transform  # not collected as a test
from bench.errors import DataError, UsageError


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


def _noise(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path: Path, arr: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def aligned_same_halves(tmp_path) -> Path:
    """An aligned dataset whose left and right halves are identical noise, so a paired crop must match."""
    root = tmp_path / "facades_same"
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            half = _noise(40, 40, seed=i + 10 * (split == "test"))
            _write(root / split / f"{i}.png", np.concatenate([half, half], axis=1))
    return root


# --------------------------------------------------------------------------- determinism


def test_same_seed_epoch_index_gives_identical_tensors():
    a = load_pairs("toy", "train", load_size=72, crop_size=64, seed=3)
    b = load_pairs("toy", "train", load_size=72, crop_size=64, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    for i in (7, 0, 31, 7):  # any access order
        x, y = a[i], b[i]
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"]) and x["B_path"] == y["B_path"]


def test_different_epoch_or_seed_changes_crops_and_b_choice():
    ds = load_pairs("toy", "train", load_size=72, crop_size=64, seed=0)
    ds.set_epoch(1)
    first = [ds[i] for i in range(8)]
    ds.set_epoch(2)
    second = [ds[i] for i in range(8)]
    assert any(not torch.equal(p["A"], q["A"]) for p, q in zip(first, second))
    assert [p["B_path"] for p in first] != [q["B_path"] for q in second]
    # A follows the index, B is random (unpaired training)
    assert [p["A_path"] for p in first] == [q["A_path"] for q in second]
    other = load_pairs("toy", "train", load_size=72, crop_size=64, seed=1)
    other.set_epoch(1)
    assert [p["B_path"] for p in first] != [other[i]["B_path"] for i in range(8)]


def test_global_rngs_neither_used_nor_disturbed():
    ds = load_pairs("toy", "train", load_size=72, crop_size=64, seed=0)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ref = ds[4]
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    again = ds[4]
    assert torch.equal(ref["A"], again["A"]) and ref["B_path"] == again["B_path"]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ds[4]
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_no_jitter_resizes_straight_to_crop():
    ds = load_pairs("toy", "train", load_size=96, crop_size=48)

    def whole_or_flipped(item) -> bool:
        whole = eval_transform(load_image(ImageRef(item["A_path"])), 48)
        return torch.equal(item["A"], whole) or torch.equal(item["A"], whole.flip(-1))

    ds.set_epoch(3, jitter=False)
    assert all(whole_or_flipped(ds[i]) for i in range(6))
    ds.set_epoch(3, jitter=True)
    assert not all(whole_or_flipped(ds[i]) for i in range(6))


def test_train_transform_matches_torchvision_pipeline():
    """Resize(BICUBIC) -> crop -> flip -> ToTensor -> Normalize(0.5), bit for bit."""
    from torchvision import transforms as T

    img = Image.fromarray(_noise(50, 37, seed=5))
    params = CropFlip(x=5, y=9, flip=True)
    official = T.Compose([
        T.Resize([48, 48], T.InterpolationMode.BICUBIC),
        T.Lambda(lambda im: im.crop((5, 9, 5 + 32, 9 + 32))),
        T.Lambda(lambda im: im.transpose(Image.FLIP_LEFT_RIGHT)),
        T.ToTensor(),
        T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    assert torch.equal(train_transform(img, 48, 32, params, flip=True), official(img))
    no_flip = train_transform(img, 48, 32, params, flip=False)
    assert torch.equal(no_flip.flip(-1), official(img))


# --------------------------------------------------------------------------- paired / unpaired semantics


def test_paired_crop_and_flip_are_shared(aligned_same_halves):
    ds = load_pairs("facades", "train", root=aligned_same_halves, paired=True, load_size=48, crop_size=32)
    for epoch in (1, 2, 3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert torch.equal(item["A"], item["B"]), (epoch, i)
            assert item["A_path"] == item["B_path"]
    assert len(ds) == ds.len_A == ds.len_B == 3


def test_unpaired_view_of_aligned_data_draws_independent_crops(aligned_same_halves):
    ds = load_pairs("facades", "train", root=aligned_same_halves, paired=False, load_size=48, crop_size=32)
    assert not all(torch.equal(ds[i]["A"], ds[i]["B"]) for i in range(len(ds)))


def test_direction_picks_the_halves(aligned_same_halves, tmp_path):
    root = tmp_path / "lr"
    left, right = _noise(16, 16, 1), _noise(16, 16, 2)
    for split in ("train", "test"):
        _write(root / split / "0.png", np.concatenate([left, right], axis=1))
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)  # noqa: E731
    default = load_pairs("facades", "test", root=root, paired=True, crop_size=16)[0]  # label2photo = BtoA
    assert torch.equal(default["A"], to_t(right)) and torch.equal(default["B"], to_t(left))
    for d in ("AtoB", "photo2label"):
        item = load_pairs("facades", "test", root=root, paired=True, crop_size=16, direction=d)[0]
        assert torch.equal(item["A"], to_t(left)) and torch.equal(item["B"], to_t(right))
    item = load_pairs("facades", "test", root=root, crop_size=16, domains=("photo", "label"))[0]
    assert torch.equal(item["A"], to_t(left))
    assert torch.equal(load_domain("facades", "test", "A", root=root, size=16)[0]["image"], to_t(right))
    assert torch.equal(load_domain("facades", "test", "photo", root=root, size=16)[0]["image"], to_t(left))


def test_unpaired_length_and_test_indexing(tmp_path):
    root = tmp_path / "h2z"
    for folder, n in (("trainA", 2), ("trainB", 5), ("testA", 3), ("testB", 2)):
        for i in range(n):
            _write(root / folder / f"{i}.png", _noise(20, 20, i))
    train = load_pairs("horse2zebra", "train", root=root, load_size=24, crop_size=16)
    assert (len(train), train.len_A, train.len_B) == (5, 2, 5)
    assert train[4]["A_path"].endswith("trainA/0.png")  # A indexed i % |A|
    test = load_pairs("horse2zebra", "test", root=root, crop_size=16)
    assert len(test) == 3
    assert [Path(test[i]["B_path"]).name for i in range(3)] == ["0.png", "1.png", "0.png"]  # i % |B|
    assert test[0]["A"].shape == (3, 16, 16)
    with pytest.raises(IndexError):
        test[3]


def test_afhq_directions_and_flat_split(fixtures_dir):
    root = fixtures_dir / "data" / "afhq_mini"
    train = load_pairs("afhq", "train", root=root, load_size=36, crop_size=32)
    test = load_pairs("afhq", "test", root=root, crop_size=32)
    assert "/cat/" in train[0]["A_path"] and "/dog/" in train[0]["B_path"]
    train_paths = {r.path for r in train.A}
    test_paths = {r.path for r in test.A}
    assert train_paths and test_paths and not train_paths & test_paths
    assert len(train_paths) + len(test_paths) == len(list((root / "cat").iterdir()))
    wild = load_pairs("afhq", "test", root=root, direction="dog2wild", crop_size=32)
    assert "/dog/" in wild[0]["A_path"] and "/wild/" in wild[0]["B_path"]
    assert load_domain("afhq", "test", "B", root=root, direction="cat2wild", size=32).domain == "wild"


def test_flat_split_is_deterministic_and_never_empty():
    names = [f"/x/img_{i:03d}.jpg" for i in range(11)]
    test, train = flat_split(names, "test"), flat_split(names, "train")
    assert len(test) == 2 and len(train) == 9 and not set(test) & set(train)
    assert flat_split(list(reversed(names)), "test") == list(reversed(test))  # same files, any listing order
    assert flat_split(names[:2], "test") and flat_split(names[:2], "train")
    assert flat_split(names[:1], "test") == flat_split(names[:1], "train") == names[:1]


# --------------------------------------------------------------------------- the real fixtures, as-is


@pytest.mark.parametrize("name", ["horse2zebra", "afhq", "maps", "cityscapes", "facades"])
def test_fixture_datasets_load_as_is(fixtures_dir, name):
    root = fixtures_dir / "data" / f"{name}_mini"
    spec = get_spec(name)
    for split in ("train", "test"):
        for paired in ((False, True) if spec.aligned else (False,)):
            ds = load_pairs(name, split, root=root, paired=paired, load_size=36, crop_size=32)
            assert len(ds) >= 1 and ds.direction == spec.default_direction
            for i in sorted({0, len(ds) - 1}):
                item = ds[i]
                for key in ("A", "B"):
                    assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
                    assert -1.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
                assert Path(item["A_path"]).is_file() and Path(item["B_path"]).is_file()
        for domain in ("A", "B"):
            images = load_domain(name, split, domain, root=root, size=32)
            assert len(images) >= 1 and images[0]["image"].shape == (3, 32, 32)


def test_cityscapes_default_is_labels_to_photo(fixtures_dir):
    root = fixtures_dir / "data" / "cityscapes_mini"
    item = load_pairs("cityscapes", "test", root=root, paired=True, crop_size=64)[0]
    right = eval_transform(load_image(ImageRef(item["A_path"], 1)), 64)
    assert torch.equal(item["A"], right)  # A = the colour label (right half)


def test_env_data_root_is_used(fixtures_dir, monkeypatch, tmp_path):
    shutil.copytree(fixtures_dir / "data" / "facades_mini", tmp_path / "roots" / "facades")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "roots"))
    assert resolve_root("facades") == tmp_path / "roots" / "facades"
    assert len(load_pairs("facades", "train", crop_size=32, load_size=32)) == 2


# --------------------------------------------------------------------------- bad data


def _h2z(root: Path, skip: str | None = None) -> Path:
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        if folder != skip:
            _write(root / folder / "0.png", _noise(8, 8, 0))
    return root


def test_missing_dataset_names_the_place_and_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_pairs("afhq", "train")
    msg = str(e.value)
    assert "dataset 'afhq' not found at" in msg and str(tmp_path / "cache") in msg
    assert "bench data get afhq" in msg and "--data-root" in msg and "\n" not in msg
    with pytest.raises(DataError, match="does not exist"):
        load_pairs("afhq", "train", root=tmp_path / "nope")


def test_missing_split(tmp_path):
    root = tmp_path / "fac"
    _write(root / "train" / "0.png", _noise(16, 8, 0))
    with pytest.raises(DataError) as e:
        load_pairs("facades", "test", root=root)
    assert str(root) in str(e.value) and "test/" in str(e.value) and "found train/" in str(e.value)


def test_empty_folder(tmp_path):
    root = _h2z(tmp_path / "h2z", skip="trainB")
    with pytest.raises(DataError, match="empty") as e:
        load_pairs("horse2zebra", "train", root=root)
    assert str(root / "trainB") in str(e.value)


def test_folder_without_images(tmp_path):
    root = _h2z(tmp_path / "h2z", skip="testA")
    (root / "testA" / "README.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images with a supported extension") as e:
        load_domain("horse2zebra", "test", "A", root=root)
    assert str(root / "testA") in str(e.value)


def test_wrong_layout(tmp_path):
    root = tmp_path / "h2z_as_aligned"
    for split in ("train", "test"):
        _write(root / split / "0.png", _noise(16, 8, 0))
    with pytest.raises(DataError) as e:
        load_pairs("horse2zebra", "train", root=root)
    msg = str(e.value)
    assert str(root) in msg and "trainA/" in msg and "found test/ train/" in msg


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_undecodable_image_fails_lazily_with_its_path(tmp_path, damage):
    root = _h2z(tmp_path / "h2z")
    bad = root / "trainA" / "1.jpg"
    _write(bad, _noise(64, 64, 3), fmt="JPEG")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not an image at all")
    ds = load_pairs("horse2zebra", "train", root=root, load_size=16, crop_size=16)  # layout is fine
    ds[0]
    with pytest.raises(DataError, match="cannot decode image") as e:
        ds[1]
    assert str(bad) in str(e.value)


def test_odd_width_aligned_image(tmp_path):
    root = tmp_path / "fac"
    bad = _write(root / "train" / "0.png", _noise(33, 16, 0))
    _write(root / "test" / "0.png", _noise(32, 16, 0))
    with pytest.raises(DataError, match="odd width") as e:  # refused when the split is opened, before training
        load_pairs("facades", "train", root=root, paired=True, load_size=16, crop_size=16)
    assert str(bad) in str(e.value)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    root = tmp_path / "h2z"
    (root / "trainA").mkdir(parents=True)
    Image.fromarray(_noise(8, 8, 0)[..., 0]).save(root / "trainA" / "g.png")
    Image.fromarray(np.dstack([_noise(8, 8, 1), np.full((8, 8), 7, np.uint8)])).save(root / "trainA" / "r.png")
    _h2z(root)
    ds = load_domain("horse2zebra", "train", "A", root=root, size=8)
    assert [ds[i]["image"].shape for i in range(len(ds))] == [(3, 8, 8)] * 3


def test_usage_errors():
    with pytest.raises(UsageError, match="no aligned pairs"):
        load_pairs("horse2zebra", "train", paired=True)
    with pytest.raises(UsageError, match="valid: horse2zebra, zebra2horse, AtoB, BtoA"):
        load_pairs("horse2zebra", "train", direction="horse2cat")
    with pytest.raises(UsageError, match="no split 'tset'"):
        load_pairs("toy", "tset")
    with pytest.raises(UsageError, match="load_size"):
        load_pairs("toy", "train", load_size=16, crop_size=32)
    with pytest.raises(UsageError, match="either direction"):
        load_pairs("toy", "train", direction="AtoB", domains=("circles", "squares"))


def test_dataloader_and_pickling_keep_items_identical():
    import pickle

    from torch.utils.data import DataLoader

    ds = load_pairs("toy", "train", load_size=40, crop_size=32, seed=2)
    ds.set_epoch(4)
    clone = pickle.loads(pickle.dumps(ds))  # what a worker process receives
    assert torch.equal(clone[5]["A"], ds[5]["A"]) and clone[5]["B_path"] == ds[5]["B_path"]
    batch = next(iter(DataLoader(ds, batch_size=2, shuffle=False)))
    assert batch["A"].shape == (2, 3, 32, 32) and len(batch["A_path"]) == 2
    assert torch.equal(batch["B"][1], ds[1]["B"])

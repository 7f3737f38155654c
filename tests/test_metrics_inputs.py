"""Every kind of bad metric input gets one BenchError line (no traceback, names the file and the fix)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main as bench_main
from bench.errors import BenchError, DataError, UsageError
from bench.metrics import evaluate
from bench.metrics.images import LoadOptions, load_images, uniform_chunks


def eval_main(argv):
    return bench_main(["eval", *argv])


def _png(path: Path, size=(32, 32), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path


def _folder(root: Path, n=3, **kw) -> Path:
    for i in range(n):
        _png(root / f"{i}.png", seed=i, **kw)
    return root


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_good_folder_is_read_in_order_as_uint8_rgb(tmp_path):
    folder = _folder(tmp_path / "ok", n=5)
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    s = load_images(folder, "real")
    assert len(s) == 5 and s.size == (32, 32) and s.image_format == "png" and s.names == ["0", "1", "2", "3", "4"]
    batches = list(s.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    first = batches[0][0]
    assert first.dtype == torch.uint8 and first.shape == (3, 32, 32)
    assert torch.equal(first, torch.from_numpy(np.asarray(Image.open(folder / "0.png"))).permute(2, 0, 1))
    assert [t.shape for t in list(s.batches(3, num_workers=1))[0]] == [(3, 32, 32)] * 3


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("empty", "has no images"),
    ("nested", "subfolders"),
    ("non_image", "non-image file"),
    ("unreadable", "cannot read"),
    ("grayscale", "grayscale image"),
    ("rgba", "RGBA image"),
    ("mixed_sizes", "mixes 2 sizes"),
    ("single", "needs at least 2"),
    ("a_file", "is a file"),
])
def test_bad_folder_is_one_clear_line(tmp_path, case, match):
    bad = tmp_path / case
    if case == "empty":
        bad.mkdir()
    elif case == "nested":
        _folder(bad / "trainA")
    elif case == "non_image":
        _folder(bad)
        (bad / "notes.txt").write_text("hi")
    elif case == "unreadable":
        _folder(bad)
        (bad / "9.png").write_bytes(b"this is not a png")
    elif case == "grayscale":
        _folder(bad)
        _png(bad / "7.png", mode="L")
    elif case == "rgba":
        _folder(bad, mode="RGBA")
    elif case == "mixed_sizes":
        _folder(bad)
        _png(bad / "8.png", size=(48, 32))
    elif case == "single":
        _folder(bad, n=1)
    elif case == "a_file":
        bad = _png(tmp_path / "one.png")
    good = _folder(tmp_path / "good")
    with pytest.raises(DataError) as exc:
        evaluate(good, bad, ("swd",))
    msg = _one_line(exc)
    assert match in msg and msg.startswith("fake images:")


def test_truncated_image_is_found_while_decoding(tmp_path):
    folder = _folder(tmp_path / "t", n=3, size=(64, 64))
    data = (folder / "1.png").read_bytes()
    (folder / "1.png").write_bytes(data[: len(data) // 2])
    s = load_images(folder, "fake")  # the header is fine
    for workers in (0, 1):
        with pytest.raises(DataError) as exc:
            list(s.batches(2, num_workers=workers))
        assert "1.png" in _one_line(exc) and "re-save" in str(exc.value)


def test_opt_ins_for_non_rgb_and_mixed_sizes(tmp_path, caplog):
    gray = _folder(tmp_path / "gray", mode="L")
    s = load_images(gray, "real", LoadOptions(convert_rgb=True))
    img = next(s.batches(3))[0]
    assert img.shape == (3, 32, 32) and torch.equal(img[0], img[1])
    assert "converting 3 non-RGB" in caplog.text
    mixed = _folder(tmp_path / "mixed")
    _png(mixed / "big.png", size=(40, 24))
    s = load_images(mixed, "real", LoadOptions(allow_mixed_sizes=True))
    assert s.size is None
    chunks = list(uniform_chunks(next(s.batches(4))))
    assert [c.shape[0] for c in chunks] == [3, 1]  # sorted names: 0,1,2 then big
    with pytest.raises(DataError, match="SWD needs one image size"):
        evaluate(mixed, mixed, ("swd",), allow_mixed_sizes=True)


def test_bad_tensors_lists_and_names(tmp_path):
    good = _folder(tmp_path / "good")
    with pytest.raises(UsageError, match="uint8 tensor"):
        evaluate(good, torch.rand(3, 3, 32, 32), ("swd",))
    with pytest.raises(UsageError, match="uint8 tensor"):
        evaluate(good, torch.zeros(3, 1, 32, 32, dtype=torch.uint8), ("swd",))
    with pytest.raises(DataError, match="does not exist"):
        evaluate(good, [good / "0.png", good / "nope.png"], ("swd",))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not an image file"):
        evaluate(good, [good / "0.png", tmp_path / "x.txt"], ("swd",))
    with pytest.raises(UsageError, match="did you mean 'fid'"):
        evaluate(good, good, ("fdi",))
    with pytest.raises(UsageError, match="1008-way fc"):
        evaluate(good, good, ("is",))
    with pytest.raises(UsageError, match="segmentation_scores"):
        evaluate(good, good, ("miou",))
    with pytest.raises(UsageError, match="expected a folder"):
        evaluate(good, 42, ("swd",))


def test_swd_size_rules(tmp_path):
    small = _folder(tmp_path / "small", size=(8, 8))
    big = _folder(tmp_path / "big", size=(32, 32))
    other = _folder(tmp_path / "other", size=(64, 64))
    with pytest.raises(DataError, match="at least 16 px"):
        evaluate(small, small, ("swd",))
    with pytest.raises(DataError, match="resize one set"):
        evaluate(big, other, ("swd",))


def test_cli_prints_one_line_and_exit_code(tmp_path, capsys):
    good = _folder(tmp_path / "good")
    assert eval_main(["--real", str(good), "--fake", str(tmp_path / "nothing"), "--metrics", "swd"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: fake images:") and "\n" not in err
    assert eval_main(["--real", str(good), "--fake", str(good), "--metrics", "nope"]) == 2
    assert "unknown metric" in capsys.readouterr().err


def test_errors_are_bench_errors():
    assert issubclass(DataError, BenchError) and issubclass(UsageError, BenchError)

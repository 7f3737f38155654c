"""`bench data list|get|check` handlers: output and exit codes."""

from __future__ import annotations

import argparse
import shutil

import pytest

from bench.cli import data as cli_data
from bench.cli import main as bench_main


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench")
    cli_data.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["data", *argv])


def test_list_shows_every_dataset(capsys):
    assert bench_main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("cityscapes", "horse2zebra", "afhq", "maps", "facades", "toy"):
        assert name in out
    assert "label2photo" in out and "not downloaded" in out and "manual download" in out


def test_check_fixture_is_partial_but_ok(fixtures_dir, capsys):
    args = _parse("check", "cityscapes", "--root", str(fixtures_dir / "data" / "cityscapes_mini"))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "partial: 64 of 2975" in out and "partial: 64 of 500" in out and "128 image files decoded" in out
    assert bench_main(["data", "check", "cityscapes", "--strict", "--quick",
                       "--root", str(fixtures_dir / "data" / "cityscapes_mini")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "counts differ from the official release" in err[0]


def test_check_toy_is_complete(capsys):
    assert bench_main(["data", "get", "toy", "--no-progress"]) == 0
    args = _parse("check", "toy")
    assert args.func(args) == 0
    assert "OK" in capsys.readouterr().out


def test_check_never_writes(tmp_path, capsys):
    """`bench data check toy --root DIR` generated the toy set at DIR; a check only reads."""
    missing = tmp_path / "nonexistent"
    assert bench_main(["data", "check", "toy", "--root", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"data root {missing} for dataset 'toy' does not exist" in err[0]
    assert not missing.exists()
    assert bench_main(["data", "check", "toy"]) == 1  # nothing in the cache either: reported, not generated
    assert "dataset 'toy' not found" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "datasets" / "toy").exists()


def test_check_reports_a_broken_image(fixtures_dir, tmp_path, capsys):
    root = tmp_path / "facades"
    shutil.copytree(fixtures_dir / "data" / "facades_mini", root)
    bad = root / "train" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:500])
    assert bench_main(["data", "check", "facades", "--root", str(root)]) == 1
    captured = capsys.readouterr()
    assert "cannot decode image" in captured.out and "1.jpg" in captured.out and "FAILED" in captured.out
    err = captured.err.strip().splitlines()  # and one error line naming the file
    assert len(err) == 1 and str(bad) in err[0]


def test_get_cityscapes_prints_the_manual_steps(tmp_path, capsys):
    args = _parse("get", "cityscapes", "--root", str(tmp_path / "cs"))
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "gtFine_trainvaltest.zip" in out and "prepare_cityscapes_dataset.py" in out
    assert str(tmp_path / "cs") in out


def test_get_toy_and_errors_are_one_line(capsys):
    assert bench_main(["data", "get", "toy", "--no-progress"]) == 0
    assert bench_main(["data", "check", "afhq"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: error: dataset 'afhq' not found")
    assert bench_main(["data", "get", "horse2zebar"]) == 2  # unknown name is a usage error
    assert "did you mean 'horse2zebra'" in capsys.readouterr().err

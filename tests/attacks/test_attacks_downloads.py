"""Attacks from a hostile HTTP server on 127.0.0.1: cut connections with and without Content-Length, bad
and truncated archives, HTML instead of data, checksum mismatches, dead mirrors; through `bench data get`.

A dataset without a known sha256 (facades, maps, afhq) can only be trusted by opening its archive; an
archive that does not open is moved aside (so a rerun downloads again) and named in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from attack_kit import (HostileServer, assert_clean, assert_refused, cut_without_length, honest, html_page,
                        short_body, snapshot, assert_intact)
from bench.data import registry
from bench.data.registry import Download
from bench.data.synthetic import png_bytes


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


def _png(seed: int, w: int = 32, h: int = 16) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def facades_tar() -> bytes:
    """A miniature facades.tar.gz (pix2pix layout), large enough that a cut lands inside a member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for split, n in (("train", 2), ("test", 1), ("val", 1)):
            for i in range(n):
                data = _png(i + 10 * len(split), w=256, h=128)
                info = tarfile.TarInfo(f"facades/{split}/{i}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def afhq_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split in ("train", "val"):
            for dom in ("cat", "dog", "wild"):
                zf.writestr(f"{split}/{dom}/0.png", _png(len(split) + len(dom), w=128, h=128))
    return buf.getvalue()


ARCHIVES = {"facades": ("facades.tar.gz", facades_tar), "afhq": ("afhq.zip", afhq_zip)}


@pytest.fixture
def point(monkeypatch):
    """point(name, url, sha256=None): the dataset's spec downloads from `url`, with counts of the mini archive."""
    def use(name: str, url: str, sha256: str | None = None) -> None:
        counts = ({"train": {"photo": 2, "label": 2}, "test": {"photo": 1, "label": 1},
                   "val": {"photo": 1, "label": 1}} if name == "facades" else
                  {s: {d: 1 for d in ("cat", "dog", "wild")} for s in ("train", "test", "val")})
        filename = ARCHIVES[name][0]
        spec = dataclasses.replace(registry.get_spec(name), counts=counts,
                                   downloads=(Download((url,), filename, sha256),))
        monkeypatch.setitem(registry.DATASETS, name, spec)
    return use


def _downloads() -> Path:
    return Path("cache") / "downloads"


def _get(bench, name: str, root: Path):
    return bench("data", "get", name, "--root", root, "--no-progress")


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_cut_without_content_length_is_not_accepted_and_a_rerun_downloads_again(bench, tmp_path, point, name):
    filename, make = ARCHIVES[name]
    archive = make()
    with HostileServer({"/a": archive}, [cut_without_length(0.5), honest]) as srv:
        point(name, srv.url("/a"))
        res = _get(bench, name, tmp_path / name)
        assert_refused(res, 1, filename, "again")
        assert not (_downloads() / filename).exists(), "the truncated file was accepted under the final name"
        assert not (tmp_path / name).exists()
        res = _get(bench, name, tmp_path / name)  # the rerun fetches it again instead of "already downloaded"
        assert_clean(res, 0)
        assert len(srv.requests) == 2
    assert (tmp_path / name / "train").is_dir()


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_a_truncated_archive_accepted_by_an_older_bench_is_fetched_again(bench, tmp_path, point, name):
    filename, make = ARCHIVES[name]
    archive = make()
    _downloads().mkdir(parents=True)
    (_downloads() / filename).write_bytes(archive[: len(archive) // 2])  # what the old code left behind
    with HostileServer({"/a": archive}) as srv:
        point(name, srv.url("/a"))
        res = _get(bench, name, tmp_path / name)
        assert_clean(res, 0)
        assert len(srv.requests) == 1
    assert any(p.name.startswith(filename) and ".bad" in p.name for p in _downloads().iterdir())


BAD_BODIES = {
    "random bytes": lambda good: bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
    "truncated but complete transfer": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
    "gzip of nothing": lambda good: __import__("gzip").compress(b""),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
@pytest.mark.parametrize("name", list(ARCHIVES))
def test_a_bad_archive_is_moved_aside_with_one_line(bench, tmp_path, point, name, case):
    filename, make = ARCHIVES[name]
    body = BAD_BODIES[case](make())
    with HostileServer({"/a": body}) as srv:
        point(name, srv.url("/a"))
        res = _get(bench, name, tmp_path / name)
    line = assert_refused(res, 1, filename)
    assert "moved" in line or "deleted" in line
    assert not (_downloads() / filename).exists()
    assert not (tmp_path / name).exists()


def test_short_body_against_content_length_keeps_the_part_and_resumes(bench, tmp_path, point):
    archive = facades_tar()
    with HostileServer({"/a": archive}, [short_body(0.4), honest]) as srv:
        point("facades", srv.url("/a"))
        res = _get(bench, "facades", tmp_path / "facades")
        assert_refused(res, 1, "facades.tar.gz", "again")
        assert (_downloads() / "facades.tar.gz.part").is_file()
        assert_clean(_get(bench, "facades", tmp_path / "facades"), 0)


def test_checksum_mismatch_names_both_hashes(bench, tmp_path, point):
    archive = facades_tar()
    with HostileServer({"/a": archive}) as srv:
        point("facades", srv.url("/a"), sha256="0" * 64)
        res = _get(bench, "facades", tmp_path / "facades")
    assert_refused(res, 1, "0" * 64, hashlib.sha256(archive).hexdigest())


def test_html_instead_of_an_archive(bench, tmp_path, point):
    with HostileServer({"/a": b""}, [html_page]) as srv:
        point("afhq", srv.url("/a"))
        assert_refused(_get(bench, "afhq", tmp_path / "afhq"), 1, "HTML", "--root")


@pytest.mark.parametrize("where", ["404", "closed port"])
def test_unreachable_mirrors(bench, tmp_path, point, where):
    with HostileServer({}) as srv:
        url = srv.url("/missing") if where == "404" else "http://127.0.0.1:9/facades.tar.gz"
        point("facades", url)
        assert_refused(_get(bench, "facades", tmp_path / "facades"), 1, "facades.tar.gz")


def test_an_unsafe_archive_is_refused_and_nothing_escapes(bench, tmp_path, point):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with HostileServer({"/a": buf.getvalue()}) as srv:
        point("facades", srv.url("/a"))
        assert_refused(_get(bench, "facades", tmp_path / "d" / "facades"), 1, "unsafe member")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_an_existing_dataset_folder_is_never_touched(bench, tmp_path, point):
    target = tmp_path / "facades"
    (target / "train").mkdir(parents=True)
    (target / "train" / "mine.png").write_bytes(_png(0))
    before = snapshot(target)
    with HostileServer({"/a": facades_tar()}, [cut_without_length(0.3)]) as srv:
        point("facades", srv.url("/a"))
        assert_refused(_get(bench, "facades", target), 1, str(target))
    assert_intact(before, target)

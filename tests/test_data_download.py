"""`bench data get` against a local HTTP server on 127.0.0.1: download, resume, checksums, safe extraction.

Registry URLs are never contacted: every test points a spec at the local server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench.data import load_pairs
from bench.data import registry
from bench.data.download import MANIFEST, fetch, install, read_manifest, safe_extract
from bench.data.registry import Download
from bench.data.synthetic import png_bytes
from bench.errors import DataError, DownloadError


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


class Server:
    """Serves in-memory files; optional Range support, a truncated first response, and a request log."""

    def __init__(self, files: dict[str, bytes], *, ranges: bool = True, truncate_first: int | None = None,
                 content_type: str = "application/octet-stream") -> None:
        self.files, self.ranges, self.truncate_first = files, ranges, truncate_first
        self.content_type = content_type
        self.requests: list[dict] = []
        self.sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if outer.ranges and rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if outer.truncate_first is not None and len(outer.requests) == 1:
                    body = body[:outer.truncate_first]  # then close: the client sees a short body
                self.wfile.write(body)
                outer.sent += len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _png(seed: int, w: int = 16, h: int = 16) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _h2z_zip(counts: dict[str, int], extra: dict[str, bytes] | None = None) -> bytes:
    """A miniature horse2zebra.zip in the official layout (top folder horse2zebra/)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for folder, n in counts.items():
            for i in range(n):
                zf.writestr(f"horse2zebra/{folder}/n{i:04d}.png", _png(i + 100 * len(folder)))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            if m.isfile():
                m.size = len(payload)
                tf.addfile(m, io.BytesIO(payload))
            else:
                tf.addfile(m)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


SMALL = {"trainA": 3, "trainB": 4, "testA": 2, "testB": 2}


@pytest.fixture
def small_h2z(monkeypatch):
    """Point the horse2zebra spec at a local archive with small counts; returns a function(url, sha)."""
    def use(urls: tuple[str, ...], sha256: str | None) -> None:
        spec = dataclasses.replace(
            registry.get_spec("horse2zebra"),
            counts={"train": {"horse": 3, "zebra": 4}, "test": {"horse": 2, "zebra": 2}},
            downloads=(Download(urls=urls, filename="horse2zebra.zip", sha256=sha256),))
        monkeypatch.setitem(registry.DATASETS, "horse2zebra", spec)
    return use


# --------------------------------------------------------------------------- end to end


def test_get_downloads_verifies_extracts_and_loads(tmp_path, small_h2z):
    archive = _h2z_zip(SMALL)
    with Server({"/h2z.zip": archive}) as srv:
        small_h2z((srv.url("/h2z.zip"),), hashlib.sha256(archive).hexdigest())
        root = install("horse2zebra", tmp_path / "data" / "h2z", progress=False)
    assert root == tmp_path / "data" / "h2z"
    assert {p.name for p in root.iterdir()} == {"trainA", "trainB", "testA", "testB", MANIFEST}
    manifest = read_manifest(root)
    assert manifest["archives"][0]["verified"] is True
    assert manifest["archives"][0]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert not (tmp_path / "cache" / "downloads" / "horse2zebra.zip").exists()  # archive removed
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers
    ds = load_pairs("horse2zebra", "train", root=root, load_size=16, crop_size=16)
    assert (ds.len_A, ds.len_B, ds[0]["A"].shape) == (3, 4, (3, 16, 16))
    # a second `get` finds it complete and does not touch the network
    assert install("horse2zebra", root, progress=False) == root


def test_unknown_sha_is_recorded_as_unverified(tmp_path, small_h2z, caplog):
    archive = _h2z_zip(SMALL)
    with Server({"/h2z.zip": archive}) as srv:
        small_h2z((srv.url("/h2z.zip"),), None)
        root = install("horse2zebra", tmp_path / "h2z", progress=False, keep_archive=True)
    entry = read_manifest(root)["archives"][0]
    assert entry["verified"] is False and entry["sha256"] == hashlib.sha256(archive).hexdigest()
    assert "NOT verified" in caplog.text
    assert (tmp_path / "cache" / "downloads" / "horse2zebra.zip").is_file()  # --keep-archive


def test_count_mismatch_installs_nothing(tmp_path, small_h2z):
    archive = _h2z_zip({**SMALL, "testB": 1})
    with Server({"/h2z.zip": archive}) as srv:
        small_h2z((srv.url("/h2z.zip"),), None)
        with pytest.raises(DataError, match="partial: 1 of 2"):
            install("horse2zebra", tmp_path / "h2z", progress=False)
    assert not (tmp_path / "h2z").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_mirror_fallback(tmp_path, small_h2z):
    archive = _h2z_zip(SMALL)
    with Server({"/h2z.zip": archive}) as srv:
        small_h2z((srv.url("/missing.zip"), srv.url("/h2z.zip")), hashlib.sha256(archive).hexdigest())
        install("horse2zebra", tmp_path / "h2z", progress=False)
        assert [r["path"] for r in srv.requests] == ["/missing.zip", "/h2z.zip"]


# --------------------------------------------------------------------------- resume and checksums


def test_resume_after_truncated_partial(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    (tmp_path / "f.bin.part").write_bytes(data[:123_456])
    with Server({"/f.bin": data}) as srv:
        got = fetch(Download((srv.url("/f.bin"),), "f.bin", hashlib.sha256(data).hexdigest()), tmp_path,
                    progress=False)
        assert srv.requests[0]["range"] == "bytes=123456-" and srv.sent == len(data) - 123_456
    assert got.verified and (tmp_path / "f.bin").read_bytes() == data
    assert not (tmp_path / "f.bin.part").exists()


def test_dropped_connection_then_resume(tmp_path):
    data = bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8))
    spec = Download(("",), "f.bin", hashlib.sha256(data).hexdigest())
    with Server({"/f.bin": data}, truncate_first=50_000) as srv:
        spec = dataclasses.replace(spec, urls=(srv.url("/f.bin"),))
        with pytest.raises(DownloadError, match="after 50000 of 200000 bytes.*resume"):
            fetch(spec, tmp_path, progress=False)
        assert (tmp_path / "f.bin.part").stat().st_size == 50_000
        fetch(spec, tmp_path, progress=False)
        assert srv.requests[1]["range"] == "bytes=50000-"
    assert (tmp_path / "f.bin").read_bytes() == data


def test_server_without_range_support_restarts_cleanly(tmp_path):
    data = bytes(np.random.default_rng(2).integers(0, 256, 100_000, dtype=np.uint8))
    (tmp_path / "f.bin.part").write_bytes(b"\xff" * 70_000)  # stale bytes that must not survive
    with Server({"/f.bin": data}, ranges=False) as srv:
        fetch(Download((srv.url("/f.bin"),), "f.bin", hashlib.sha256(data).hexdigest()), tmp_path, progress=False)
        assert srv.requests[0]["range"] == "bytes=70000-" and srv.sent == len(data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_bad_checksum_deletes_and_names_url_expected_and_got(tmp_path):
    data = b"tampered archive bytes"
    wrong = "0" * 64
    with Server({"/f.zip": data}) as srv:
        url = srv.url("/f.zip")
        with pytest.raises(DownloadError) as e:
            fetch(Download((url,), "f.zip", wrong), tmp_path, progress=False)
    msg = str(e.value)
    assert url in msg and wrong in msg and hashlib.sha256(data).hexdigest() in msg
    assert list(tmp_path.iterdir()) == []


def test_html_page_instead_of_archive(tmp_path):
    with Server({"/afhq.zip": b"<html>sign in</html>"}, content_type="text/html; charset=utf-8") as srv:
        with pytest.raises(DownloadError, match="HTML page"):
            fetch(Download((srv.url("/afhq.zip"),), "afhq.zip"), tmp_path, progress=False)


# --------------------------------------------------------------------------- safe extraction


def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, small_h2z):
    evil = _h2z_zip(SMALL, extra={"../evil.txt": b"owned"})
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(DownloadError, match=r"unsafe member '\.\./evil\.txt'"):
        safe_extract(_write(tmp_path / "evil.zip", evil), target)
    assert not (tmp_path / "a" / "b" / "evil.txt").exists() and not target.exists()
    with Server({"/evil.zip": evil}) as srv:  # the same through `bench data get`
        small_h2z((srv.url("/evil.zip"),), None)
        with pytest.raises(DownloadError, match="unsafe member"):
            install("horse2zebra", tmp_path / "data" / "h2z", progress=False)
    assert not (tmp_path / "data" / "evil.txt").exists() and not (tmp_path / "data" / "h2z").exists()
    assert not [p for p in (tmp_path / "data").iterdir()]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("member,why", [
    (_info("/tmp/bench-abs-evil.txt"), "absolute path"),
    (_info("ok/../../evil.txt"), "'..'"),
    (_info("ok/link", tarfile.SYMTYPE, "../../etc/passwd"), "symbolic link"),
    (_info("ok/abslink", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (_info("ok/hard", tarfile.LNKTYPE, "../outside.txt"), "hard link"),
    (_info("ok/dev", tarfile.CHRTYPE), "device"),
])
def test_unsafe_tar_members_are_refused(tmp_path, member, why):
    archive = _write(tmp_path / "x.tar.gz", _tar([_info("ok/fine.txt"), member]))
    target = tmp_path / "out"
    with pytest.raises(DownloadError, match=why):
        safe_extract(archive, target)
    assert not target.exists() and not Path("/tmp/bench-abs-evil.txt").exists()


def test_safe_tar_with_inner_link_extracts(tmp_path):
    archive = _write(tmp_path / "x.tar.gz", _tar([_info("d/a.txt"), _info("d/b.txt", tarfile.SYMTYPE, "a.txt"),
                                                   _info("d/sub/c.txt", tarfile.SYMTYPE, "../a.txt")]))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "b.txt").read_bytes() == b"x"
    assert (tmp_path / "out" / "d" / "sub" / "c.txt").read_bytes() == b"x"


def test_aligned_tar_gz_layout_is_normalised(tmp_path, monkeypatch):
    """pix2pix archives (facades.tar.gz) hold facades/{train,test,val}/ AB images."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for split, n in (("train", 2), ("test", 1), ("val", 1)):
            for i in range(n):
                data = _png(i, w=32, h=16)
                info = tarfile.TarInfo(f"facades/{split}/{i}.jpg".replace(".jpg", ".png"))
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    with Server({"/facades.tar.gz": archive}) as srv:
        spec = dataclasses.replace(
            registry.get_spec("facades"),
            counts={"train": {"photo": 2, "label": 2}, "test": {"photo": 1, "label": 1},
                    "val": {"photo": 1, "label": 1}},
            downloads=(Download((srv.url("/facades.tar.gz"),), "facades.tar.gz",
                                hashlib.sha256(archive).hexdigest()),))
        monkeypatch.setitem(registry.DATASETS, "facades", spec)
        root = install("facades", tmp_path / "facades", progress=False)
    assert {p.name for p in root.iterdir()} == {"train", "test", "val", MANIFEST}
    item = load_pairs("facades", "train", root=root, paired=True, load_size=16, crop_size=16)[0]
    assert item["A"].shape == (3, 16, 16)


def test_existing_incomplete_target_is_not_overwritten(tmp_path, small_h2z):
    target = tmp_path / "h2z"
    (target / "trainA").mkdir(parents=True)
    (target / "trainA" / "mine.png").write_bytes(_png(0))
    small_h2z(("http://127.0.0.1:9/never",), None)
    with pytest.raises(DataError, match="exists but is not a complete horse2zebra"):
        install("horse2zebra", target, progress=False)
    assert (target / "trainA" / "mine.png").is_file()


def test_registry_urls_and_pinned_hashes():
    h2z = registry.get_spec("horse2zebra").downloads[0]
    assert h2z.sha256 == "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1"
    assert h2z.urls[0] == "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    assert registry.get_spec("afhq").downloads[0].filename == "afhq.zip"
    assert registry.get_spec("maps").urls == ("http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz",)
    assert not registry.get_spec("cityscapes").downloadable
    with pytest.raises(DownloadError, match="login required"):
        install("cityscapes", progress=False)

"""`bench data get`: resumable HTTP(S) download, sha256 verification, safe extraction, count check.

- A download goes to ``<file>.part``; a rerun resumes it with an HTTP Range request and restarts cleanly
  when the server ignores Range (200 instead of 206). The sha256 is computed while streaming.
- A known sha256 that does not match deletes the file and raises DownloadError naming URL, expected and got.
  Without a known sha256 the hash is recorded in the dataset's ``.bench-dataset.json`` as unverified.
- Archives (zip, tar, tar.gz, ...) are checked member by member BEFORE anything is written: absolute paths,
  ``..`` components, links pointing outside the target, and device files are refused. Extraction goes to a
  temporary sibling folder which is renamed into place only after the image counts match the spec.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bench.data.check import count_images
from bench.data.registry import DatasetSpec, Download, get_spec
from bench.data.roots import cache_dir, install_root
from bench.data.synthetic import ensure_toy
from bench.errors import DataError, DownloadError, disk_full

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST = ".bench-dataset.json"
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError)


@dataclass(frozen=True)
class Fetched:
    """A downloaded file and what is known about its integrity."""

    path: Path
    url: str
    sha256: str
    verified: bool


# --------------------------------------------------------------------------- download


def _sha256_file(path: Path) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h


def _progress(enabled: bool):
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), disable=not enabled)


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from 'bytes start-end/total'; Nones when absent or malformed."""
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (value or "").strip())
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def _fetch_once(url: str, dest: Path, *, progress: bool, timeout: float) -> tuple[str, int]:
    """Stream `url` into ``dest.part`` (resuming it when possible); returns (sha256 hex, size)."""
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "bench-data/0.1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part may be complete, or stale
            log.info("%s: server says the partial file is complete or invalid; checking it", part.name)
            return _sha256_file(part).hexdigest(), offset
        raise
    with resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        mode = "wb"
        if offset and resp.status == 206:
            start, full = _content_range_start(resp.headers.get("Content-Range"))
            if start == offset:
                mode, total = "ab", full
            else:
                log.warning("%s: unexpected Content-Range %r; restarting from byte 0",
                            url, resp.headers.get("Content-Range"))
        elif offset:
            log.info("%s: the server ignored the Range request; restarting from byte 0", url)
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/html") and not dest.name.endswith((".html", ".htm")):
            raise DownloadError(f"{url} returned an HTML page instead of {dest.name} (a login, quota or "
                                "preview page?); download it in a browser and pass its folder with --root")
        hasher = _sha256_file(part) if mode == "ab" else hashlib.sha256()
        done = offset if mode == "ab" else 0
        try:
            with open(part, mode) as f, _progress(progress) as bar:
                task = bar.add_task(dest.name, total=total, completed=done)
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    try:
                        f.write(block)
                    except OSError as exc:
                        raise disk_full(exc, part, f"after {done} bytes; the partial file is kept and a rerun "
                                                   "resumes it") or exc
                    hasher.update(block)
                    done += len(block)
                    bar.update(task, completed=done)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise disk_full(exc, part) or exc
    if total is None:
        log.info("%s sent no Content-Length: %d bytes received; checking the archive before using it", url, done)
    if total is not None and done != total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes; {part} was kept, "
                            "run the same command again to resume")
    return hasher.hexdigest(), done


def fetch(download: Download, dest_dir: Path, *, progress: bool = True, timeout: float = 60.0) -> Fetched:
    """Download `download` into `dest_dir` (resuming, trying mirrors in order) and verify it: by its sha256 when
    known, otherwise by opening the whole archive (a transfer cut short without Content-Length looks complete).
    A file that fails is moved aside, so the next run downloads it again."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / download.filename
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        digest = _sha256_file(dest).hexdigest()
        if download.sha256 is not None and digest == download.sha256:
            log.info("%s already downloaded", dest)
            return Fetched(dest, "", digest, True)
        if download.sha256 is None:
            problem = archive_problem(dest)
            if problem is None:
                log.info("%s already downloaded (archive opens; no known sha256)", dest)
                return Fetched(dest, "", digest, False)
            aside = move_aside(dest)
            log.warning("%s is not a complete archive (%s); moved aside to %s and downloading it again", dest,
                        problem, aside.name)
        else:
            log.warning("%s does not match its sha256; downloading it again", dest)
            dest.unlink()
    errors = []
    for url in download.urls:
        try:
            digest, size = _fetch_once(url, dest, progress=progress, timeout=timeout)
        except DownloadError:
            raise
        except _NETWORK_ERRORS as exc:
            errors.append(f"{url}: {exc}")
            log.warning("download failed: %s: %s", url, exc)
            continue
        if download.sha256 is not None and digest != download.sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 mismatch for {download.filename}: expected {download.sha256}, "
                                f"got {digest}; the file was deleted (retry, or report a changed upstream file)")
        if download.sha256 is None:
            problem = archive_problem(part)
            if problem is not None:
                aside = move_aside(part, dest)
                raise DownloadError(f"{url}: {download.filename} ({size} bytes) is not a complete archive "
                                    f"({problem}); moved aside to {aside}; run the same command again to download "
                                    "it again")
            log.warning("%s has no known sha256; got %s (size %d, the archive opens): recorded, NOT verified",
                        download.filename, digest, size)
        os.replace(part, dest)
        return Fetched(dest, url, digest, download.sha256 is not None)
    kept = f"; partial file kept at {part}" if part.exists() else ""
    raise DownloadError(f"could not download {download.filename}: {'; '.join(errors)}{kept}")


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_problem(path: Path) -> str | None:
    """Why `path` (a .part or an archive) is not a complete zip/tar archive, or None. Reads every member (zip
    CRCs, the whole compressed tar stream), so a truncated file is found before it is used."""
    name = path.name.removesuffix(".part")
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        return None  # not an archive: nothing to open (only a sha256 can verify it)
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                if bad is not None:
                    return f"member {bad!r} is corrupt"
                if not zf.infolist():
                    return "the zip archive is empty"
            return None
        with tarfile.open(path, "r:*") as tf:
            members = 0
            for member in tf:
                members += 1
                if member.isfile():
                    f = tf.extractfile(member)
                    while f is not None and f.read(CHUNK):
                        pass
            if not members:
                return "the tar archive is empty"
        return None
    except tarfile.ReadError as exc:
        if "could not be opened" in str(exc):  # tarfile lists every compression it tried, one per line
            return "not a zip, tar, tar.gz, tar.bz2 or tar.xz file"
        return f"ReadError: {_first_line(exc)}"
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib_error(), ValueError) as exc:
        return f"{type(exc).__name__}: {_first_line(exc)}" if str(exc).strip() else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def zlib_error():
    import zlib

    return zlib.error


def move_aside(path: Path, final: Path | None = None) -> Path:
    """Rename a bad download to `<final name>.bad-<time>` next to it; returns the new path."""
    final = final or path
    aside = final.with_name(f"{final.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    os.replace(path, aside)
    return aside


# --------------------------------------------------------------------------- safe extraction


def _name_problem(name: str) -> str | None:
    """Why an archive member name is unsafe, or None."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' component escapes the target"
    return None


def _escapes(member_dir: str, link: str) -> bool:
    """True when `link` (relative to `member_dir` inside the archive) points outside the archive root."""
    if link.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", link):
        return True
    depth = 0
    for part in PurePosixPath(member_dir, link.replace("\\", "/")).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part != ".":
            depth += 1
    return False


def _check_members(archive: Path) -> str:
    """Validate every member of `archive` without writing; returns 'zip' or 'tar'."""
    def refuse(name: str, why: str) -> None:
        raise DownloadError(f"{archive}: unsafe member {name!r} ({why}); refusing to extract anything")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if (why := _name_problem(info.filename)):
                    refuse(info.filename, why)
                if stat.S_ISLNK(info.external_attr >> 16):
                    refuse(info.filename, "symbolic link (zip links are not extracted)")
        return "zip"
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(f"{archive} is not a readable zip or tar archive ({exc}); delete it and retry")
    with tf:
        for m in tf.getmembers():
            if (why := _name_problem(m.name)):
                refuse(m.name, why)
            if m.issym() and _escapes(str(PurePosixPath(m.name).parent), m.linkname):
                refuse(m.name, f"symbolic link to {m.linkname!r} outside the target")
            if m.islnk() and (_name_problem(m.linkname) or _escapes("", m.linkname)):
                refuse(m.name, f"hard link to {m.linkname!r} outside the target")
            if m.isdev() or m.isfifo():
                refuse(m.name, "device or fifo")
    return "tar"


def safe_extract(archive: Path, target: Path) -> None:
    """Extract `archive` into the (new or empty) folder `target`, after checking every member is safe."""
    kind = _check_members(archive)
    target.mkdir(parents=True, exist_ok=True)
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
        return
    with tarfile.open(archive, "r:*") as tf:
        # The "data" filter repeats these checks inside tarfile (defence in depth, Python >= 3.11.4).
        if hasattr(tarfile, "data_filter"):
            tf.extractall(target, filter="data")
        else:  # pragma: no cover - old Pythons; members were validated above
            tf.extractall(target)


def content_root(folder: Path) -> Path:
    """Descend through single top-level folders (e.g. horse2zebra.zip -> horse2zebra/), skipping __MACOSX."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) == 1 and entries[0].is_dir() and not _looks_like_data(folder):
            folder = entries[0]
        else:
            return folder


def _looks_like_data(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return bool(names & {"train", "val", "test", "trainA", "trainB", "testA", "testB"})


# --------------------------------------------------------------------------- bench data get


def _count_mismatches(spec: DatasetSpec, root: Path) -> list[str]:
    rows, problems, _, _ = count_images(spec, root)
    bad = [f"{r.split}/{r.domain}: {r.status}" for r in rows if r.status != "ok" and
           (r.found >= 0 or r.split in spec.required_splits)]
    return problems + bad


def install(name: str, root: str | Path | None = None, *, progress: bool = True, keep_archive: bool = False,
            download_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Download, verify, extract and count-check dataset `name` into `root` (default: its install root)."""
    spec = get_spec(name)
    target = Path(root).expanduser() if root is not None else install_root(name)
    if spec.layout == "generated":
        return ensure_toy(target)
    if not spec.downloadable:
        raise DownloadError(f"{name} cannot be downloaded automatically (login required); run "
                            f"`bench data get {name}` to see how to prepare it")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        issues = _count_mismatches(spec, target) if target.is_dir() else ["not a folder"]
        if not issues:
            log.info("%s is already complete at %s", name, target)
            return target
        raise DataError(f"{target} exists but is not a complete {name} ({issues[0]}); remove it or pass "
                        "another --root")
    downloads = download_dir or cache_dir() / "downloads"
    fetched = [fetch(d, downloads, progress=progress, timeout=timeout) for d in spec.downloads]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        for f in fetched:
            log.info("extracting %s", f.path)
            safe_extract(f.path, staging)
        data = content_root(staging)
        issues = _count_mismatches(spec, data)
        if issues:
            raise DataError(f"{name}: the archive does not hold the official layout/counts ({issues[0]}"
                            f"{f'; +{len(issues) - 1} more' if len(issues) > 1 else ''}); archive kept at "
                            f"{fetched[0].path}")
        manifest = {
            "name": name, "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "archives": [{"file": f.path.name, "url": f.url, "sha256": f.sha256, "verified": f.verified}
                         for f in fetched],
            "counts": {split: dict(c) for split, c in spec.counts.items()},
        }
        (data / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.is_dir():
            target.rmdir()  # empty (checked above); rename needs the name free
        os.rename(data, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_archive:
        for f in fetched:
            f.path.unlink(missing_ok=True)
    log.info("%s ready at %s", name, target)
    return target


def read_manifest(root: Path) -> dict | None:
    """The `.bench-dataset.json` written by `install`, or None."""
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

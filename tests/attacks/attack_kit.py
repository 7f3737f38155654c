"""What every attack case checks, and the hostile environments it runs in.

An attack is a CLI call (in-process, `bench.cli.main`) against tampered input. The user must see:
- the documented exit code (2 for usage errors, 1 for failures), never an uncaught exception;
- exactly one non-empty line on stderr, `bench: error: ...`, naming the culprit (a file or a value) and the fix;
- no traceback anywhere (stdout carries the log);
- every file that existed before unchanged (`snapshot` / `assert_intact`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from bench.cli import main

#: A CUT run on the toy set that trains and scores in about two seconds (SWD needs no weights).
TINY = {"data.max_train": "2", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "train.log_every": "1",
        "n_epochs": "1", "n_epochs_decay": "1"}


def tiny_run_argv(*extra: str, method: str = "cut", dataset: str = "toy", out: str = "runs",
                  settings: dict | None = None) -> list[str]:
    """`bench run` of the tiny CUT run, tracked in ./mlflow.db, writing under ./<out>.

    The database path is absolute: MLflow caches its store per URI, so a relative one would keep pointing
    at the first test's folder.
    """
    argv = ["run", "--methods", method, "--dataset", dataset, "--preset", "smoke", "--out", out,
            "--tracking-uri", f"sqlite:///{Path.cwd() / 'mlflow.db'}"]
    for key, value in {**TINY, **(settings or {})}.items():
        argv += ["--set", f"{key}={value}"]
    return argv + list(extra)


@dataclass
class Outcome:
    code: int | str
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def call(capsys, *argv) -> Outcome:
    """Run `bench ARGV` in this process; an escaped exception becomes code 'raised' with its traceback."""
    capsys.readouterr()
    try:
        code: int | str = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - an attack must never get here
        code = "raised"
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err + traceback.format_exc())
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_refused(res: Outcome, code: int, *needles: str) -> str:
    """Exit `code`, one `bench: error:` line on stderr containing every needle (case-insensitive), no traceback."""
    shown = f"exit {res.code}\n--- stderr ---\n{res.err[-3000:]}\n--- stdout ---\n{res.out[-3000:]}"
    assert "Traceback" not in res.out + res.err, shown
    assert res.code == code, shown
    lines = res.err_lines
    assert len(lines) == 1, shown
    line = lines[0]
    assert line.startswith("bench: error: "), shown
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in the error line\n{shown}"
    return line


def assert_clean(res: Outcome, code: int = 0) -> None:
    """Exit `code` with nothing on stderr and no traceback (a recovered situation)."""
    shown = f"exit {res.code}\n--- stderr ---\n{res.err[-3000:]}\n--- stdout ---\n{res.out[-3000:]}"
    assert "Traceback" not in res.out + res.err, shown
    assert res.code == code, shown
    assert not res.err_lines, shown


# ------------------------------------------------------------------------------------------ files intact
def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (relative paths)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


#: Records a resume attempt rewrites by design: the failure it ends with, and where the run is tracked now (each
#: test's copy of a run lives in its own folder, so its tracking URI differs from the template's).
ATTEMPT_RECORDS = ("error.txt", "tracking.json")


def assert_intact(before: dict[str, str], root: Path, *, allow_changed: tuple[str, ...] = ()) -> None:
    """Every file of `before` still exists with the same bytes (paths in `allow_changed` may differ, and the
    `ATTEMPT_RECORDS` of a run folder)."""
    now = snapshot(root)
    lost = [p for p in before if p not in now]
    changed = [p for p in before if p in now and now[p] != before[p] and p not in allow_changed
               and Path(p).name not in ATTEMPT_RECORDS]
    assert not lost and not changed, f"lost: {lost}; changed: {changed}"


# ------------------------------------------------------------------------------------------ disk full
class _FullFile:
    """A writable file on the fake full disk: writes fail with ENOSPC once the disk's capacity is used."""

    def __init__(self, disk: "FullDisk", real) -> None:
        self._disk, self._real = disk, real

    def write(self, data):
        size = len(data)
        if self._disk.used + size > self._disk.capacity:
            self._disk.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += size
        return self._real.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()
        return False

    def __iter__(self):
        return iter(self._real)

    def __getattr__(self, name):
        return getattr(self._real, name)


class FullDisk:
    """Make files under `root` behave as on a disk with `capacity` free bytes (0 = full from the start).

    Wraps `open`/`io.open` (Path.write_text, json dumps) and `os.fdopen` (atomic writes via mkstemp): writes
    of files under `root` beyond the capacity raise OSError(ENOSPC), like a real full file system. Creating
    (empty) files still works, as it usually does on a full disk.
    """

    def __init__(self, root: Path, capacity: int = 0) -> None:
        self.root = str(Path(root).resolve())
        self.capacity, self.used, self.refused = capacity, 0, 0

    def _under(self, path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(self.root + os.sep)
        except TypeError:
            return False

    def install(self, monkeypatch) -> "FullDisk":
        import builtins

        real_open, real_fdopen = io.open, os.fdopen

        def fake_open(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and self._under(file):
                return _FullFile(self, f)
            return f

        def fake_fdopen(fd, mode="r", *args, **kwargs):
            f = real_fdopen(fd, mode, *args, **kwargs)
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return f
            if any(c in mode for c in "wax+") and self._under(target):
                return _FullFile(self, f)
            return f

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "fdopen", fake_fdopen)
        return self


# ------------------------------------------------------------------------------------------ hostile server
Behaviour = Callable[[BaseHTTPRequestHandler, bytes], None]


def honest(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def cut_without_length(fraction: float = 0.5) -> Behaviour:
    """No Content-Length; sends part of the body, then closes the connection (HTTP/1.0 style end)."""
    def behave(handler, body):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        handler.wfile.write(body[:int(len(body) * fraction)])
        handler.close_connection = True
    return behave


def short_body(fraction: float = 0.5) -> Behaviour:
    """Announces the full Content-Length, sends only part of it, closes."""
    def behave(handler, body):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:int(len(body) * fraction)])
        handler.close_connection = True
    return behave


def html_page(handler, body):
    page = b"<html><body>Sign in to download</body></html>"
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(page)))
    handler.end_headers()
    handler.wfile.write(page)


def not_found(handler, body):
    handler.send_error(404)


class HostileServer:
    """Serves one file per path on 127.0.0.1 with a chosen behaviour per request (a list is used in order)."""

    def __init__(self, files: dict[str, bytes], behaviours: list[Behaviour] | None = None) -> None:
        self.files = files
        self.behaviours = list(behaviours or [honest])
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                index = min(len(outer.requests) - 1, len(outer.behaviours) - 1)
                outer.behaviours[index](self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "HostileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

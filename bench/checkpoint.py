"""Atomic checkpoint writes and verified loads.

A checkpoint is one dict to which the method (nets, optimisers, pools), the schedulers, the RNGs and the loop
position each add their part. Writes go to a temp file in the same folder, are fsynced, then renamed over the
target, so a kill at any moment leaves either the old or the new file, never a torn one. Loads use
`weights_only=True`; a truncated or corrupt file is a CheckpointError naming it, never a silent restart.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import CheckpointError, disk_full

FORMAT_VERSION = 1
TMP_SUFFIX = ".tmp"
#: What a training checkpoint (last.pt) must hold.
TRAINING_STATE = ("method", "schedulers", "loop", "rng")


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file + fsync + rename + directory fsync).

    A full disk is a DiskFullError naming `path`; the old file, if any, is left as it was and no temp file
    stays behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise disk_full(exc, path) or exc
    try:
        # mkstemp creates 0600; the file gets what open() would give it (0644 under the usual umask 022), so
        # colleagues on a shared server can read results and checkpoints.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full(exc, path, f"{len(data)} bytes")
        if full is not None:
            raise full from None
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Delete temp files a killed `atomic_write_bytes` left in `folder` (of file `name`, or of any file).

    Only for folders one process writes at a time (a run's folder and checkpoints): a kill between the
    temp write and the rename leaves a full-size `.<name>.<random>.tmp`.
    """
    pattern = f".{name}.*{TMP_SUFFIX}" if name else f".*{TMP_SUFFIX}"
    removed = []
    for p in Path(folder).glob(pattern):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write `text` (UTF-8)."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented, key-sorted JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialise `state` with torch.save and write it atomically (stale temp copies of it are removed first)."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    remove_stale_temps(Path(path).parent, Path(path).name)
    atomic_write_bytes(Path(path), buf.getvalue())


#: What to do about an unusable checkpoint.
RESTORE_HINT = "restore a good copy of it, or start over with --restart (moves the run folder aside, deletes nothing)"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (weights_only=True); `require` = keys it must have."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes: a write that never finished?); {RESTORE_HINT}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        detail = f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is unreadable ({detail}); it is truncated, corrupt "
                              f"or not a bench checkpoint: {RESTORE_HINT}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} is not a bench checkpoint (format {found!r}, expected "
                              f"{FORMAT_VERSION}); {RESTORE_HINT}")
    missing = [k for k in require if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete (no {', '.join(missing)}); {RESTORE_HINT}")
    return state

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

from bench.errors import CheckpointError

FORMAT_VERSION = 1


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
    """Write `data` to `path` atomically (temp file + fsync + rename + directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the file gets what open() would give it (0644 under the usual umask 022), so
        # colleagues on a shared server can read results and checkpoints.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write `text` (UTF-8)."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented, key-sorted JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialise `state` with torch.save and write it atomically."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "it may be truncated or corrupt: delete it to restart or restore a copy") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a bench checkpoint (format {state.get('format_version') if isinstance(state, dict) else '?'})")
    return state

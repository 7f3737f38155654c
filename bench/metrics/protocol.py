"""The protocol fingerprint of an evaluation: everything that changes a metric's number, as named fields.

Two numbers are comparable only when their fingerprints agree on the fields that matter (resize mode,
feature network and weights hash, N, reference split, direction, ...). The fingerprint is also part of
every feature-cache key, so a cached statistic is reused only under the same protocol.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from bench.errors import UsageError, closest

log = logging.getLogger(__name__)

#: Bump when any metric's numbers may change for the same inputs; it is in every fingerprint and cache key.
IMPL_VERSION = "bench.metrics/1"


@dataclass(frozen=True)
class Protocol:
    """How images reach the feature network (clean-fid's named resize modes)."""

    name: str
    #: Machine-readable resize description recorded in fingerprints.
    resize: str
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "legacy_pytorch": Protocol(
        "legacy_pytorch",
        "torch F.interpolate bilinear to 299x299, align_corners=False, no antialias (inside pytorch-fid's InceptionV3)",
        "pytorch-fid 0.3.0 exactly: the protocol of CUT, DCLGAN, QS-Attn, EnCo, NICE-GAN, F-LSeSim tables",
    ),
    "clean": Protocol(
        "clean",
        "PIL bicubic to 299x299 per channel on float32, clipped to [0,255] (clean-fid's resizer), "
        "then pytorch-fid's InceptionV3 without its internal resize",
        "clean-fid's resize with the pytorch-fid Inception weights; NOT numerically clean-fid, which also "
        "swaps in NVIDIA's TorchScript Inception",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The named protocol, or a UsageError listing the valid names."""
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}{closest(name, PROTOCOLS)}; use one of {', '.join(PROTOCOLS)} "
                         "(--protocol)")
    return PROTOCOLS[name]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The bench cache folder: the argument, else $BENCH_CACHE_DIR, else ~/.cache/bench."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("BENCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bench"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of every package whose behaviour can move a metric."""
    out = {}
    for pkg in ("torch", "torchvision", "pytorch-fid", "scipy", "numpy", "lpips", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


# ------------------------------------------------------------------------------------------ file hashes
_HASH_MEMO: dict[tuple[str, int, int], str] = {}
_HASH_INDEX = "file_sha256.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 of a (large) weights file, remembered by (path, mtime, size) in memory and in the cache folder."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    index_path = cache_root(cache_dir) / _HASH_INDEX
    index: dict[str, Any] = {}
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(str(path))
    if isinstance(entry, dict) and entry.get("mtime_ns") == st.st_mtime_ns and entry.get("size") == st.st_size:
        digest = str(entry["sha256"])
    else:
        digest = sha256_file(path)
        index[str(path)] = {"mtime_ns": st.st_mtime_ns, "size": st.st_size, "sha256": digest}
        try:
            from bench.checkpoint import atomic_write_json

            atomic_write_json(index_path, index)
        except OSError as exc:  # a read-only cache only costs a re-hash next time
            log.debug("cannot write %s: %s", index_path, exc)
    _HASH_MEMO[key] = digest
    return digest


# ------------------------------------------------------------------------------------------ fingerprints
def fingerprint(metric: str, *, n_real: int | None = None, n_fake: int | None = None, seed: int | None = None,
                context: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The protocol fingerprint of one metric result: metric-specific fields + versions + caller context."""
    fp: dict[str, Any] = {"metric": metric, "implementation": IMPL_VERSION}
    if n_real is not None:
        fp["n_real"] = int(n_real)
    if n_fake is not None:
        fp["n_fake"] = int(n_fake)
    if seed is not None:
        fp["seed"] = int(seed)
    fp.update(fields)
    fp["packages"] = package_versions()
    for key, value in (context or {}).items():
        # The caller's context (direction, reference split, ...) never silently replaces a protocol field.
        fp[key if key not in fp else f"context.{key}"] = value
    return fp


def digest(obj: Any) -> str:
    """A stable sha256 of a JSON-able object (cache keys)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())

"""Pretrained weights files: find one, verify its sha256, load it. The one loader of every weights file bench reads
(the FID Inception, F/LSeSim's VGG16, the Cityscapes DRN, official generators for `bench import`).

- find: an explicit path (a flag or config field), then an environment variable, then the torch hub cache
  (`$TORCH_HOME/hub/checkpoints/<file name>`, where torchvision and pytorch-fid keep downloads), then an optional
  download the caller supplies (it must verify what it fetched; torch.hub's `hash_prefix` does). A named file
  that does not exist is a UsageError; nothing found is None, and the caller says what that means (a metric
  unavailable, a method that refuses to train).
- verify: the file's sha256 (remembered by path, mtime and size, bench.metrics.protocol.weights_sha256) must
  start with the known prefix (torchvision and pytorch-fid put it in the file name); CheckpointError otherwise.
- load: `torch.load(weights_only=True)` on the CPU; a `{"state_dict": ...}` wrapper and DataParallel's `module.`
  prefix are removed; anything but a dict of tensors is a CheckpointError naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.errors import CheckpointError, UsageError


@dataclass(frozen=True)
class WeightsSpec:
    """One kind of weights file and where bench looks for it."""

    #: What it is, for messages ("the FID Inception weights").
    what: str
    #: Its name in the torch hub cache ("" = not looked up there).
    filename: str = ""
    #: The prefix every copy's sha256 starts with ("" = none known: the sha256 is recorded, not checked).
    sha256_prefix: str = ""
    #: How a user names a file: the flag or config field, and the environment variable ("" = none).
    flag: str = ""
    env: str = ""
    #: Files named by flag or variable must match `sha256_prefix` too. False where other files are valid
    #: (the pool3-only FID Inception trunk has another hash; its sha256 goes into every fingerprint).
    verify_named: bool = True
    #: Added to "no such file" messages (e.g. the file names that are meant).
    hint: str = ""

    @property
    def cache_path(self) -> Path | None:
        """Where the torch hub cache keeps it (None when it is not looked up there)."""
        return hub_path(self.filename) if self.filename else None


@dataclass(frozen=True)
class WeightsFile:
    """A found, verified weights file and where it came from."""

    path: Path
    sha256: str
    source: str

    def __str__(self) -> str:
        return f"{self.path} (sha256 {self.sha256[:16]}..., from {self.source})"


def hub_path(filename: str) -> Path:
    """`$TORCH_HOME/hub/checkpoints/<filename>`: where torchvision and pytorch-fid cache downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 of a weights file, remembered by (path, mtime, size) in memory and in the bench cache."""
    from bench.metrics.protocol import weights_sha256

    return weights_sha256(path, cache_dir)


def verify(path: str | Path, sha256_prefix: str, what: str, cache_dir: str | Path | None = None) -> str:
    """The file's sha256; CheckpointError naming the file when it does not start with `sha256_prefix`."""
    digest = sha256(path, cache_dir)
    if sha256_prefix and not digest.startswith(sha256_prefix):
        raise CheckpointError(f"{path}: sha256 {digest[:16]}... does not start with {sha256_prefix}; the file is not "
                              f"{what} (corrupt or a different model): replace it")
    return digest


def find(spec: WeightsSpec, explicit: str | Path | None = None, *, cache_dir: str | Path | None = None,
         download: Callable[[Path], Path] | None = None) -> WeightsFile | None:
    """The weights file of `spec`: `explicit`, then `$spec.env`, then the torch hub cache, then `download(dst)`.

    Returns None when nothing is found (and `download` is None); a named file that does not exist is a UsageError,
    one whose hash is wrong a CheckpointError.
    """
    named = ((explicit, spec.flag or "path"), (os.environ.get(spec.env) if spec.env else None, f"${spec.env}"))
    for value, source in named:
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise UsageError(f"{source}={value}: no such file ({spec.hint or spec.what})")
            prefix = spec.sha256_prefix if spec.verify_named else ""
            return WeightsFile(path, verify(path, prefix, spec.what, cache_dir), source)
    cached = spec.cache_path
    if cached is not None and cached.is_file():
        return WeightsFile(cached, verify(cached, spec.sha256_prefix, spec.what, cache_dir), "torch hub cache")
    if download is None or cached is None:
        return None
    path = download(cached)
    return WeightsFile(path, verify(path, spec.sha256_prefix, spec.what, cache_dir), "download")


def load_weights_file(path: str | Path):
    """What a weights file holds (weights_only, on the CPU): tensors, dicts of them, plain numbers. Multi-net
    checkpoints (NICE-GAN's params file, MUNIT's gen_/dis_ files) are dicts of state dicts. CheckpointError
    naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle with code, not a torch file
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"{path}: cannot load weights ({type(exc).__name__}: {first}); it may be truncated, "
                              "not a torch file, or need code to unpickle (only plain tensors are read)") from None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict of tensors from a weights file (weights_only, on the CPU); CheckpointError otherwise."""
    return as_state_dict(load_weights_file(path), path)


def as_state_dict(state, path: str | Path) -> dict[str, torch.Tensor]:
    """`state` as a plain state dict of tensors (`state_dict` wrapper and `module.` removed); CheckpointError
    naming `path` otherwise."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}

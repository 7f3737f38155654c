"""Where a dataset lives on disk: an explicit root, $BENCH_DATA_ROOT/<name>, or the bench cache."""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.registry import get_spec
from bench.data.synthetic import ensure_toy
from bench.errors import DataError

ENV_DATA_ROOT = "BENCH_DATA_ROOT"
ENV_CACHE_DIR = "BENCH_CACHE_DIR"


def cache_dir() -> Path:
    """The bench cache: $BENCH_CACHE_DIR, default ~/.cache/bench."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


def candidate_roots(name: str) -> list[Path]:
    """The default locations of dataset `name`, in lookup order."""
    out = []
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        out.append(Path(env).expanduser() / name)
    out.append(cache_dir() / "datasets" / name)
    return out


def install_root(name: str) -> Path:
    """Where `bench data get` puts a dataset when no --root is given: the first candidate root."""
    return candidate_roots(name)[0]


def find_root(name: str, root: str | Path | None = None) -> Path | None:
    """The existing folder of `name` (explicit root first), or None; never generates anything."""
    get_spec(name)
    if root is not None:
        path = Path(root).expanduser()
        return path if path.is_dir() else None
    return next((p for p in candidate_roots(name) if p.is_dir()), None)


def existing_root(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset `name` as it is on disk: `root` > $BENCH_DATA_ROOT/<name> > the cache.

    Never writes (`bench data check` reads through this); a missing folder raises DataError naming where it
    looked and how to get the dataset.
    """
    spec = get_spec(name)
    if spec.layout == "generated":
        how = f"it is generated on first use by `bench run --dataset {name}` or `bench data get {name}`"
    elif spec.downloadable:
        how = f"run `bench data get {name}`"
    else:
        how = f"see `bench data get {name}` for how to prepare it"
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise DataError(f"data root {path} for dataset {name!r} {what}; check --data-root"
                            + (f" ({how})" if spec.layout == "generated" and not path.exists() else ""))
        return path
    found = find_root(name)
    if found is None:
        where = " or ".join(str(p) for p in candidate_roots(name))
        raise DataError(f"dataset {name!r} not found at {where}; {how} or pass --data-root")
    return found


def resolve_root(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset `name`: `root` > $BENCH_DATA_ROOT/<name> > $BENCH_CACHE_DIR/datasets/<name>.

    The built-in `toy` set is generated at the chosen place on first use. A missing dataset raises
    DataError naming where it looked and how to get it.
    """
    spec = get_spec(name)
    if spec.layout == "generated":  # generated into the cache unless a copy exists elsewhere
        target = Path(root).expanduser() if root is not None else find_root(name) or cache_dir() / "datasets" / name
        return ensure_toy(target)
    return existing_root(name, root)

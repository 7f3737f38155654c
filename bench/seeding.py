"""One place that seeds, records and restores every RNG, and sets the determinism switches.

RNG states are stored as tensors and plain Python values only, so checkpoints load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

# torch is imported inside the functions that need it, so that validating a seed (study specs, the CLI) does not
# load torch.


#: Seeds are 32-bit: numpy's legacy seeding, Optuna's samplers and the per-stream seeds derived from a run's seed
#: (seed * 1000 + stream for latent codes) all stay within their ranges.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, what: str = "seed") -> int:
    """`seed` as an int in [0, MAX_SEED]; ConfigError naming it otherwise."""
    from bench.errors import ConfigError

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"{what} {seed!r} is out of range: use an integer from 0 to {MAX_SEED} (2**32 - 1)")
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global RNG and torch (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool = True) -> None:
    """Deterministic kernels (bitwise-reproducible on CPU; on CUDA as far as PyTorch allows)."""
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def rng_state() -> dict[str, Any]:
    """Every global RNG state, checkpoint-safe."""
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` recorded."""
    import torch

    random.setstate(_lists_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples_to_lists(x):
    return [_tuples_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _lists_to_tuples(x):
    return tuple(_lists_to_tuples(v) for v in x) if isinstance(x, list) else x


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (run seed, epoch, worker...), stable across platforms."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)

"""What every launched worker process shares: its slice of the CPU cores and dying with its launcher."""

from __future__ import annotations

import os
import signal

from bench.threads import ENV_SHARE, available_cores


def cpu_share(concurrent: int) -> int:
    """Cores per worker when `concurrent` workers share this process's cores (at least one each)."""
    return max(1, available_cores() // max(1, concurrent))


def worker_env(share: int, **extra: str) -> dict[str, str]:
    """The environment of a worker: its core share for bench (BENCH_CPU_SHARE) and for OpenMP/MKL pools.

    n workers x all-core OpenMP pools oversubscribe the machine, and spinning threads then make every worker
    many times slower. An OMP_NUM_THREADS/MKL_NUM_THREADS already set by the user wins.
    """
    n = str(share)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, **os.environ, ENV_SHARE: n, "PYTHONUNBUFFERED": "1",
            **extra}


def die_with_parent() -> None:
    """In a worker subprocess (preexec_fn): get SIGKILL when the launching thread dies (Linux), so a killed
    launcher leaves no orphan training."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

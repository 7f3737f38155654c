"""`bench doctor`: the environment bench sees."""

from __future__ import annotations


def register(sub) -> None:
    sub.add_parser("doctor", help="show the environment bench sees").set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    import os
    import platform

    import torch

    print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.cuda.is_available()}  "
          f"threads {torch.get_num_threads()}")
    for var in ("BENCH_INCEPTION_WEIGHTS", "BENCH_DATA_ROOT", "BENCH_CACHE_DIR", "MLFLOW_TRACKING_URI", "TORCH_HOME"):
        print(f"{var}={os.environ.get(var, '')}")
    try:
        from bench.metrics.features import resolve_inception_weights  # type: ignore

        print(f"inception weights: {resolve_inception_weights(None, download=False)}")
    except Exception as exc:  # doctor reports, never fails
        print(f"inception weights: unavailable ({exc})")
    return 0

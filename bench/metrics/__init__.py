"""The metric suite: FID, KID, SWD, paired scores, LPIPS diversity, Cityscapes segmentation scores.

    from bench.metrics import evaluate
    results = evaluate("testB", "results/fake_B", metrics=("fid", "kid", "swd"))
    results["fid"].value, results["fid"].fingerprint

Every result is a `MetricResult` carrying its protocol fingerprint; a metric that cannot be computed (missing
weights) has `value=None` and says why in `unavailable`. What each metric is (direction, unit, label) is
written once, in `bench.metrics.catalog`. Protocols: reference/methods.md §3 and DESIGN.md §5.

The names below are imported on first use, so reading the catalogue (`from bench.metrics import catalog`)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {"CATALOG": "bench.metrics.catalog", "Metric": "bench.metrics.catalog",
            "METRICS": "bench.metrics.evaluate", "evaluate": "bench.metrics.evaluate",
            "lpips_diversity": "bench.metrics.lpips_diversity", "paired_scores": "bench.metrics.paired",
            "MetricResult": "bench.metrics.result", "segmentation_scores": "bench.metrics.segmentation"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench.metrics' has no attribute {name!r}")

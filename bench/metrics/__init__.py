"""The metric suite: FID, KID, SWD, paired scores, LPIPS diversity, Cityscapes segmentation scores.

    from bench.metrics import evaluate
    results = evaluate("testB", "results/fake_B", metrics=("fid", "kid", "swd"))
    results["fid"].value, results["fid"].fingerprint

Every result is a `MetricResult` carrying its protocol fingerprint; a metric that cannot be computed (missing
weights) has `value=None` and says why in `unavailable`. What each metric is (direction, unit, label) is
written once, in `bench.metrics.catalog`. Protocols: reference/methods.md §3 and DESIGN.md §5.
"""

from bench.metrics.catalog import CATALOG, Metric
from bench.metrics.evaluate import METRICS, evaluate
from bench.metrics.lpips_diversity import lpips_diversity
from bench.metrics.paired import paired_scores
from bench.metrics.result import MetricResult
from bench.metrics.segmentation import segmentation_scores

__all__ = ["CATALOG", "METRICS", "Metric", "MetricResult", "evaluate", "lpips_diversity", "paired_scores",
           "segmentation_scores"]

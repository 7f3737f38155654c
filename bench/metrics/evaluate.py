"""`evaluate(real, fake, metrics)`: one entry for every distribution metric (and the paired scores).

Each input is read and checked once; Inception features are computed at most once per set (and cached on
disk for file inputs); every result carries its protocol fingerprint. A metric that cannot be computed here
(no Inception weights offline) comes back with `value=None` and the reason, the others are still computed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import MetricUnavailable, UsageError, closest
from bench.metrics import catalog
from bench.metrics import fid as fid_mod
from bench.metrics import kid as kid_mod
from bench.metrics import swd as swd_mod
from bench.metrics.features import (InceptionFID, WeightsFile, default_cache, describe_inception, features_for,
                                    resolve_inception_weights)
from bench.metrics.images import ImageInput, ImageSet, LoadOptions, load_images
from bench.metrics.paired import PAIRED, paired_scores
from bench.metrics.protocol import fingerprint, get_protocol
from bench.metrics.result import MetricResult

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


#: The metrics `evaluate` can compute, from the catalogue (bench.metrics.catalog).
METRICS = {name: catalog.get(name) for name in catalog.names(scored=True)}
DISTRIBUTION = catalog.names(kind="distribution")
INCEPTION_METRICS = ("fid", "kid")


def check_metric_names(metrics: Sequence[str]) -> None:
    """UsageError for unknown names (with the closest match) and for metrics evaluate() cannot compute."""
    for m in metrics:
        if m in catalog.REFUSED:
            raise UsageError(catalog.REFUSED[m])
        if m not in METRICS:
            raise UsageError(f"unknown metric {m!r}{closest(m, METRICS)}; valid: {', '.join(METRICS)}")
        kind = METRICS[m].kind
        if kind == "segmentation":
            raise UsageError(f"{m} needs label maps and DRN weights: use segmentation_scores() "
                             "(bench eval --labels DIR --seg-weights FILE)")
        if kind == "diversity":
            raise UsageError(f"{m} needs several samples per input from a model: use lpips_diversity()")
        if kind == "reconstruction":
            raise UsageError(f"{m} needs the model's encoder: it is scored by `bench run` for methods that declare it")


def evaluate(real: ImageInput, fake: ImageInput, metrics: Sequence[str] = ("fid", "kid", "swd"), *,
             protocol: str = "legacy_pytorch", device: str = "cpu", batch_size: int = 50, num_workers: int = 0,
             seed: int = 0, inception_weights: str | Path | None = None, cache_dir: str | Path | None = None,
             context: Mapping[str, Any] | None = None, kid_subsets: int = 50, kid_subset_size: int | None = None,
             allow_mixed_sizes: bool = False, convert_rgb: bool = False,
             cache: bool | None = None) -> dict[str, MetricResult]:
    """Score `fake` against `real` with each metric in `metrics`; results keyed by metric name.

    Args:
        real, fake: a folder, a list of image files, or a uint8 tensor (N,3,H,W).
        protocol: "legacy_pytorch" (pytorch-fid, the papers' protocol) or "clean" (clean-fid's PIL resize).
        seed: KID subsets and SWD neighbourhoods/projections.
        inception_weights: weights file; else $BENCH_INCEPTION_WEIGHTS, the torch hub cache, pytorch-fid's download.
        cache_dir: feature cache root (default $BENCH_CACHE_DIR or ~/.cache/bench).
        context: merged into every fingerprint, e.g. {"direction": "AtoB", "reference_split": "test"}.
        cache: cache Inception features on disk: None = for file inputs only, True/False = always/never.
    """
    metrics = list(dict.fromkeys(metrics))
    check_metric_names(metrics)
    if not metrics:
        raise UsageError("no metrics requested")
    proto = get_protocol(protocol)
    results: dict[str, MetricResult] = {}
    dist = [m for m in metrics if METRICS[m].kind == "distribution"]
    if dist:
        opts = LoadOptions(allow_mixed_sizes=allow_mixed_sizes, convert_rgb=convert_rgb)
        real_set, fake_set = load_images(real, "real", opts), load_images(fake, "fake", opts)
        common = {"n_real": len(real_set), "n_fake": len(fake_set), "context": context,
                  "image_format": f"real {real_set.image_format}, fake {fake_set.image_format}"}
        wanted = [m for m in dist if m in INCEPTION_METRICS]
        if wanted:
            results.update(_inception_metrics(wanted, real_set, fake_set, proto, common, device=device,
                                              batch_size=batch_size, num_workers=num_workers, seed=seed,
                                              inception_weights=inception_weights, cache_dir=cache_dir, cache=cache,
                                              kid_subsets=kid_subsets, kid_subset_size=kid_subset_size))
        if "swd" in dist:
            r = swd_mod.swd(real_set, fake_set, seed=seed, batch_size=batch_size, num_workers=num_workers)
            fp = fingerprint("swd", seed=seed, **common, pyramid="Laplacian, 5x5 binomial, mirror pad, down to 16 px",
                             levels=list(r.levels), nhood=f"{swd_mod.NHOOD_SIZE}x{swd_mod.NHOOD_SIZE}x3",
                             nhoods_per_image=swd_mod.NHOODS_PER_IMAGE,
                             directions=f"{swd_mod.DIR_REPEATS}x{swd_mod.DIRS_PER_REPEAT}", scale=swd_mod.SCALE,
                             unequal_counts="exact 1-D W1 between empirical distributions")
            results["swd"] = MetricResult("swd", r.mean, None, {f"level_{k}": v for k, v in r.levels.items()},
                                          fingerprint=fp)
    paired = [m for m in metrics if m in PAIRED]
    if paired:
        results.update(paired_scores(real, fake, paired, batch_size=batch_size, num_workers=num_workers,
                                     convert_rgb=convert_rgb, context=context))
    return {m: results[m] for m in metrics}


def _inception_metrics(wanted: list[str], real_set: ImageSet, fake_set: ImageSet, proto, common: dict[str, Any], *,
                       device: str, batch_size: int, num_workers: int, seed: int, inception_weights, cache_dir,
                       cache: bool | None, kid_subsets: int, kid_subset_size: int | None) -> dict[str, MetricResult]:
    try:
        weights: WeightsFile = resolve_inception_weights(inception_weights, cache_dir=cache_dir)
    except MetricUnavailable as exc:
        return {m: MetricResult.missing(m, str(exc),
                                        fingerprint=fingerprint(m, **common, protocol=proto.name, resize=proto.resize))
                for m in wanted}
    store = default_cache(cache_dir)
    feats = {}
    for s in (real_set, fake_set):
        use = s.from_files if cache is None else cache
        feats[s.label] = features_for(s, extractor_name=InceptionFID.name, protocol=proto, weights=weights, cache=store,
                                      use_cache=use, device=device, batch_size=batch_size,
                                      num_workers=num_workers)["pool3"]
    described = describe_inception(weights, proto)
    out: dict[str, MetricResult] = {}
    if "fid" in wanted:
        fp = fingerprint("fid", **common, **described, statistics="float64 mean/cov (np.cov)",
                         sqrt_trace="symmetric eigenvalues / nuclear norm (no scipy sqrtm)")
        warning = fid_mod.small_sample_warning(len(real_set), len(fake_set))
        if warning:
            # Once per process and N: a `--methods all` run would otherwise repeat it at every evaluation.
            (log.debug if warning in _WARNED else log.warning)(warning)
            _WARNED.add(warning)
            fp["warning"] = warning
        try:
            out["fid"] = MetricResult("fid", fid_mod.frechet_distance_from_features(feats["real"], feats["fake"]),
                                      fingerprint=fp)
        except MetricUnavailable as exc:
            out["fid"] = MetricResult.missing("fid", str(exc), fingerprint=fp)
    if "kid" in wanted:
        r = kid_mod.kid(feats["real"], feats["fake"], subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        fp = fingerprint("kid", seed=seed, **common, **described, kernel="polynomial (x.y/d + 1)^3",
                         estimator="unbiased MMD^2", subsets=r.subsets, subset_size=r.subset_size,
                         scale=kid_mod.SCALE, std="population std over subsets, x scale")
        out["kid"] = MetricResult("kid", r.mean * kid_mod.SCALE, r.std * kid_mod.SCALE,
                                  {"subsets": float(r.subsets), "subset_size": float(r.subset_size)}, fingerprint=fp)
    return out

"""Is a published number reproduced? Intervals over seeds and the verdict of one reproduced cell.

- reproduced: the published value lies inside the 95 % t interval over seeds, widened by the protocol spread
  (how far the same images move under the choices papers differ on, bench.spread);
- not reproduced: it lies outside; the gap is given in the metric's unit and in units of the seed std;
- not comparable: the runs were not made like the paper's (another preset, resolution or precision), or the
  metric is missing; the numbers are still shown, and the reason always says why.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from bench.metrics import catalog

#: The papers' output size (every seed paper scores 256x256 translations).
PAPER_IMAGE_SIZE = 256
PAPER_PRECISION = "fp32"
CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1; None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of the mean over seeds; None with fewer than 2 seeds."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean, std = mean_std(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def _comparability(res) -> list[str]:
    """Why a cell's runs were not made like the paper's (empty when they were)."""
    reasons: list[str] = []
    presets = sorted({s.preset for s in res.scores if s.preset})
    for p in presets:
        if p != "paper":
            reasons.append(f"{p} preset (sizes and schedule are not the paper's)")
    sizes = sorted({int(s.fingerprint.get("image_size") or s.image_size) for s in res.scores
                    if s.fingerprint.get("image_size") or s.image_size})
    for size in sizes:
        if size != PAPER_IMAGE_SIZE:
            reasons.append(f"{size}px outputs (paper: {PAPER_IMAGE_SIZE}px)")
    for prec in sorted({s.precision for s in res.scores if s.precision}):
        if prec != PAPER_PRECISION:
            reasons.append(f"{prec} precision (paper: {PAPER_PRECISION})")
    reverse_best = [s for s in res.scores if s.section == "reverse" and s.fingerprint.get("epoch_rule") == "best"]
    if reverse_best:
        reasons.append("reverse direction scored with the best (test-set-selected) weights, not the last epoch")
    if res.n == 0:
        why = sorted({s.unavailable for s in res.scores if s.unavailable}) or ["no finished run"]
        reasons.append(f"missing metric: {catalog.get(res.cell.metric).label} not computed ({'; '.join(why)})")
    elif res.n < len(res.scores):
        missing = [f"seed {s.seed}: {s.unavailable}" for s in res.scores if s.value is None]
        reasons.append("missing metric for " + "; ".join(missing))
    if res.cell.published is None:
        reasons.append("no published value in bench's unit")
    return reasons


def widened(res) -> tuple[float, float] | None:
    """The interval a published value must fall in: the t interval (or the bootstrap one with a single seed,
    or the mean itself) widened by the protocol spread around the mean."""
    if res.mean is None:
        return None
    lo, hi = res.t_interval or res.bootstrap_interval or (res.mean, res.mean)
    spread: dict[str, Any] = res.spread or {}
    if spread.get("min") is not None:
        lo -= max(0.0, res.mean - spread["min"])
        hi += max(0.0, spread["max"] - res.mean)
    return lo, hi


def verdict(res) -> tuple[str, str]:
    """(verdict, why) of one reproduced cell (bench.reproduce.CellResult)."""
    m = catalog.get(res.cell.metric)

    def f(v: float) -> str:
        return m.format(v)

    reasons = _comparability(res)
    if reasons:
        return "not comparable", "; ".join(reasons)
    lo, hi = widened(res)
    pub = res.cell.published
    basis = ("95% t interval over seeds" if res.t_interval else
             "95% bootstrap interval over test images (one seed)" if res.bootstrap_interval else
             "one seed, no interval")
    if res.spread.get("min") is not None:
        basis += " widened by the protocol spread"
    if lo <= pub <= hi:
        return "reproduced", f"published {f(pub)} inside [{f(lo)}, {f(hi)}] ({basis})"
    gap = res.mean - pub
    outside = (lo - pub) if pub < lo else (pub - hi)
    worse = gap > 0 if not m.higher_is_better else gap < 0
    text = (f"ours {f(res.mean)} vs published {f(pub)}: {abs(gap):.{m.decimals}f} "
            f"{'worse' if worse else 'better'}, {outside:.{m.decimals}f} outside [{f(lo)}, {f(hi)}] ({basis})")
    if res.std:
        text += f"; {abs(gap) / res.std:.1f} seed std"
    return "not reproduced", text

"""Protocol spread: the images a run already saved, re-scored under the choices papers differ on.

No retraining, no weights: every alternative reads the PNGs the evaluation wrote (`eval/<weights>/fake`, the
official loop's repeats in `fake_wrap`, the reference set in `eval/reference`). The official protocol
(bench.official: last epoch, pytorch-fid's resize, PNG, one fake per input, every target test image) is the
baseline; each alternative changes one choice:

- epoch: the best epoch (selected on the test set) instead of the last;
- resize: clean-fid's PIL bicubic resize instead of pytorch-fid's bilinear one (FID/KID only);
- format: the fakes through a JPEG round trip (PIL quality 75), as a JPEG-saving pipeline would score them;
- test_set: the official loop's wrap-around count, max(|A|, |B|) fakes, instead of one per input;
- reference: the official loop's re-saved real_B (|A| images) instead of every target test image.

Results are cached per run in `eval/spread.json`, keyed by the run's metrics.json, so a second
`bench reproduce` re-scores nothing.

Also here: the bootstrap over test images for FID and KID (resampling a run's fakes with replacement, from
the cached Inception features; FID through the n x n Gram form of the trace term, exact and fast for n << 2048).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bench.errors import BenchError, DataError
from bench.official import loop_references

log = logging.getLogger(__name__)

#: Metrics the spread re-scores (the distribution metrics computed from image folders).
SPREAD_METRICS = ("fid", "kid", "swd")
#: Metrics with a bootstrap interval over test images.
BOOTSTRAP_METRICS = ("fid", "kid")
JPEG_QUALITY = 75

#: The alternatives, in the order they are tried, with what each changes.
CHOICES = {
    "epoch": "best epoch (selected on the test set) instead of the last",
    "resize": "clean-fid's PIL bicubic resize instead of pytorch-fid's bilinear",
    "format": f"fakes through a JPEG round trip (quality {JPEG_QUALITY})",
    "test_set": "official loop's wrap-around count, max(|A|,|B|) fakes",
    "reference": "official loop's re-saved real_B as the reference set",
}


@dataclass
class Spread:
    """One cell's spread: the seed mean under each choice, min..max, and the choice that moves it most."""

    baseline: float | None
    values: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        scored = {k: v for k, v in self.values.items() if v is not None}
        out: dict[str, Any] = {"baseline": self.baseline, "values": self.values, "notes": self.notes,
                               "min": None, "max": None, "largest": None, "largest_delta": None, "note": ""}
        if self.baseline is None or not scored:
            out["note"] = "; ".join(f"{k}: {v}" for k, v in self.notes.items()) or "nothing to re-score"
            return out
        allv = [self.baseline, *scored.values()]
        out["min"], out["max"] = min(allv), max(allv)
        name = max(scored, key=lambda k: abs(scored[k] - self.baseline))
        out["largest"], out["largest_delta"] = name, scored[name] - self.baseline
        return out


# ------------------------------------------------------------------------------------------ the saved images
@dataclass
class SavedImages:
    """Where one run's scored images are, for one direction (forward or reverse)."""

    run_dir: Path
    seed: int
    section: str  # last | reverse
    fakes: list[Path]
    wrap: list[Path]
    references: list[Path]
    best_fakes: list[Path] | None
    n_targets: int
    eval_cfg: Mapping[str, Any]
    device: str


def saved_images(run, cell, device: str = "cpu") -> SavedImages:
    """The per-input fakes, wrap-around repeats, references and best-epoch fakes a finished run wrote."""
    from bench.data import get_spec

    run_dir = Path(run.cfg.run_dir)
    doc = json.loads((run_dir / "metrics.json").read_text())
    spec = get_spec(run.cfg.dataset)
    reverse = spec.normalize_direction(cell.direction) != spec.normalize_direction(run.cfg.data.direction)
    section = "reverse" if reverse else "last"
    sec = doc.get(section) or {}
    if not sec:
        raise DataError(f"{run_dir}/metrics.json has no {section} scores")
    # Folders from the run folder itself (the paths in metrics.json are relative to where the run was started).
    sub = "BtoA/" if reverse else ""
    tag = sec.get("weights", "last") if reverse else "last"
    fake_dir = run_dir / "eval" / f"{sub}{tag}" / "fake"
    info = sec.get("test_set") or {}
    wrap = [fake_dir.parent / "fake_wrap" / f for f in info.get("wrap_files", [])]
    best = None
    if not reverse:
        b = doc.get("best") or {}
        best_dir = run_dir / "eval" / "best" / "fake"
        if b and b.get("epoch") != sec.get("epoch") and best_dir.is_dir():
            best = sorted(best_dir.glob("*.png"))
        elif b:
            best = []  # best epoch == last epoch: the same images
    refs = sorted((run_dir / "eval" / f"{sub}reference").glob("*.png"))
    return SavedImages(run_dir=run_dir, seed=int(run.cfg.seed), section=section,
                       fakes=sorted(fake_dir.glob("*.png")), wrap=wrap, references=refs, best_fakes=best,
                       n_targets=int(info.get("n_targets") or len(refs)), eval_cfg=_eval_cfg(run.cfg), device=device)


def _eval_cfg(cfg) -> dict[str, Any]:
    e = cfg.eval
    return {"protocol": e.protocol, "inception_weights": e.inception_weights, "batch_size": e.batch_size,
            "seed": int(cfg.seed)}


def _jpeg_round_trip(files: Sequence[Path]):
    import torch
    from PIL import Image

    out = []
    for f in files:
        buf = io.BytesIO()
        Image.open(f).convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
        buf.seek(0)
        arr = np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    return torch.stack(out)


def _score(real, fake, metric: str, imgs: SavedImages, protocol: str | None = None) -> float | None:
    from bench.metrics.evaluate import evaluate

    e = imgs.eval_cfg
    res = evaluate(real, fake, metrics=(metric,), protocol=protocol or e["protocol"], device=imgs.device,
                   batch_size=e["batch_size"], seed=e["seed"], inception_weights=e["inception_weights"])[metric]
    return None if res.value is None else float(res.value)


def rescore(imgs: SavedImages, metric: str, choice: str) -> tuple[float | None, str]:
    """One run's `metric` under one alternative choice; (value, note) with the reason when there is none."""
    fakes, refs = imgs.fakes, imgs.references
    if choice == "epoch":
        if imgs.best_fakes is None:
            return None, ("no best-epoch images: the reverse direction is scored with one set of weights, or the "
                          "best checkpoint was not scored (eval.score_best=false)")
        if not imgs.best_fakes:
            return _score(refs, fakes, metric, imgs), "best epoch = last epoch"
        return _score(refs, imgs.best_fakes, metric, imgs), ""
    if choice == "resize":
        if metric not in ("fid", "kid"):
            return None, "resize applies to the Inception metrics only"
        other = "clean" if imgs.eval_cfg["protocol"] == "legacy_pytorch" else "legacy_pytorch"
        return _score(refs, fakes, metric, imgs, protocol=other), ""
    if choice == "format":
        return _score(refs, _jpeg_round_trip(fakes), metric, imgs), ""
    if choice == "test_set":
        if not imgs.wrap:
            return _score(refs, fakes, metric, imgs), "nothing wraps around (|B| <= |A|): same images"
        return _score(refs, fakes + imgs.wrap, metric, imgs), ""
    if choice == "reference":
        idx = loop_references(len(fakes), len(refs))
        return _score([refs[i] for i in idx], fakes, metric, imgs), ""
    raise KeyError(choice)


def _signature(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "metrics.json").read_bytes()).hexdigest()


def run_spread(imgs: SavedImages, metric: str) -> dict[str, tuple[float | None, str]]:
    """Every alternative for one run, from `eval/spread.json` when this metrics.json was re-scored before."""
    from bench.checkpoint import atomic_write_json

    cache_path = imgs.run_dir / "eval" / "spread.json"
    sig = _signature(imgs.run_dir)
    try:
        cache = json.loads(cache_path.read_text())
        if cache.get("signature") != sig:
            cache = {"signature": sig, "values": {}}
    except (OSError, ValueError):
        cache = {"signature": sig, "values": {}}
    out: dict[str, tuple[float | None, str]] = {}
    changed = False
    for choice in CHOICES:
        key = f"{imgs.section}:{metric}:{choice}"
        if key not in cache["values"]:
            try:
                cache["values"][key] = list(rescore(imgs, metric, choice))
            except BenchError as exc:
                cache["values"][key] = [None, str(exc).replace(str(imgs.run_dir), "<run>")]
            changed = True
        value, note = cache["values"][key]
        out[choice] = (value, note)
    if changed:
        atomic_write_json(cache_path, cache)
    return out


def protocol_spread(runs: Sequence[Any], cell, device: str = "cpu") -> Spread:
    """The cell's seed mean under the official protocol and under each alternative choice."""
    from bench.reproduce import seed_scores

    base_vals = [seed_scores(r, cell).value for r in runs]
    base_vals = [v for v in base_vals if v is not None]
    spread = Spread(baseline=float(np.mean(base_vals)) if base_vals else None)
    per_choice: dict[str, list[float]] = {c: [] for c in CHOICES}
    notes: dict[str, set[str]] = {c: set() for c in CHOICES}
    for r in runs:
        try:
            imgs = saved_images(r, cell, device)
            scores = run_spread(imgs, cell.metric)
        except (BenchError, OSError, ValueError) as exc:
            for c in CHOICES:
                notes[c].add(f"seed {r.cfg.seed}: {exc}")
            continue
        for c, (value, note) in scores.items():
            if value is not None:
                per_choice[c].append(value)
            if note:
                notes[c].add(note)
    for c in CHOICES:
        vals = per_choice[c]
        spread.values[c] = float(np.mean(vals)) if vals and len(vals) == len(runs) else None
        if vals and len(vals) != len(runs):
            notes[c].add(f"scored for {len(vals)} of {len(runs)} seeds")
        if notes[c]:
            spread.notes[c] = "; ".join(sorted(notes[c]))
    return spread


# ------------------------------------------------------------------------------------------ bootstrap
def _inception_features(files: Sequence[Path], imgs: SavedImages) -> np.ndarray:
    from bench.metrics.features import InceptionFID, default_cache, features_for, resolve_inception_weights
    from bench.metrics.images import load_images
    from bench.metrics.protocol import get_protocol

    e = imgs.eval_cfg
    weights = resolve_inception_weights(e["inception_weights"])
    s = load_images(list(files), "images")
    feats = features_for(s, extractor_name=InceptionFID.name, protocol=get_protocol(e["protocol"]), weights=weights,
                         cache=default_cache(None), use_cache=True, device=imgs.device, batch_size=e["batch_size"])
    return feats["pool3"].double().numpy()


def fid_bootstrap(real: np.ndarray, fake: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """FID of `n_boot` resamples (with replacement) of the fake set against the fixed real set.

    tr sqrt(S_r^1/2 S_f S_r^1/2) is the sum of square roots of the eigenvalues of Xc S_r Xc^T / (n-1)
    (Xc: the centred resampled fakes), an n x n matrix: exact, and cheap for the papers' n of 100-500.
    """
    from bench.metrics import fid as fid_mod

    stats = fid_mod.statistics(real)
    n = fake.shape[0]
    if n < 2:
        raise DataError(f"the bootstrap needs at least 2 fakes, got {n}")
    k = fake @ stats.sigma @ fake.T  # n x n
    gram = fake @ fake.T
    tr_r = float(np.trace(stats.sigma))
    out = np.empty(n_boot)
    c = np.eye(n) - 1.0 / n
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        mu = fake[idx].mean(axis=0)
        kb = c @ k[np.ix_(idx, idx)] @ c / (n - 1)
        ev = np.linalg.eigvalsh((kb + kb.T) / 2)
        tr_f = float(np.trace(c @ gram[np.ix_(idx, idx)] @ c)) / (n - 1)
        out[b] = float(((stats.mu - mu) ** 2).sum() + tr_r + tr_f - 2.0 * np.sqrt(np.clip(ev, 0, None)).sum())
    return out


def kid_bootstrap(real: np.ndarray, fake: np.ndarray, n_boot: int, rng: np.random.Generator,
                  seed: int = 0) -> np.ndarray:
    """KID x100 of `n_boot` resampled fake sets, each scored as the evaluation scores KID (bench.metrics.kid)."""
    from bench.metrics import kid as kid_mod

    n = fake.shape[0]
    if n < 2:
        raise DataError(f"the bootstrap needs at least 2 fakes, got {n}")
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        out[b] = kid_mod.kid(real, fake[idx], seed=seed).mean * kid_mod.SCALE
    return out


def bootstrap_interval(runs: Sequence[Any], cell, n_boot: int = 200, confidence: float = 0.95,
                       device: str = "cpu") -> tuple[float, float]:
    """95 % percentile interval of the seed mean of FID/KID when each seed's test fakes are resampled."""
    draws = []
    for r in runs:
        imgs = saved_images(r, cell, device)
        if len(imgs.fakes) < 2:
            raise DataError(f"{len(imgs.fakes)} test image(s) in {imgs.run_dir.name}: nothing to resample")
        real = _inception_features(imgs.references, imgs)
        fake = _inception_features(imgs.fakes, imgs)
        rng = np.random.default_rng(10_000 + imgs.seed)
        if cell.metric == "fid":
            draws.append(fid_bootstrap(real, fake, n_boot, rng))
        else:
            draws.append(kid_bootstrap(real, fake, n_boot, rng, seed=imgs.seed))
    if not draws:
        raise DataError("no finished run to resample")
    means = np.mean(np.stack(draws), axis=0)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)

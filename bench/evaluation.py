"""Evaluation of a trained method on a dataset's test split: translate, write PNGs, score.

Which metrics a run scores is decided by data (bench.metrics.catalog `scope`), never by dataset or method names
here: every translation gets the scope-"always" metrics (FID, KID, SWD); aligned datasets add the scope-"aligned"
ones (L1/PSNR/SSIM against ground truth); a dataset spec lists scope-"dataset" metrics per direction
(`DatasetSpec.eval_metrics`: Cityscapes' DRN scores for label->photo); a method declares the scope-"method"
metrics it supports (`Method.extra_metrics`: LPIPS diversity, BicycleGAN's reconstruction error). `eval.metrics`
narrows that set. Every number carries its protocol fingerprint (bench.metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig
from bench.errors import ConfigError, closest
from bench.images import grid, save_png, to_uint8
from bench.metrics import catalog
from bench.official import EPOCH_RULES, TEST_SETS, official_loop

log = logging.getLogger(__name__)

N_QUALITATIVE = 8
#: Logged during training when the selection metric cannot be computed here (no Inception weights offline).
FALLBACK_EVAL_METRICS = ("swd",)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning the first time in this process, debug afterwards (evaluations repeat every few epochs)."""
    (log.debug if message in _WARNED else log.warning)(message)
    _WARNED.add(message)


@dataclass
class EvalData:
    """The test inputs (source domain) and the real reference images (target domain)."""

    sources: Any  # ImageDataset of the source domain
    targets: Any  # ImageDataset of the target domain
    aligned: bool  # targets[i] is the ground truth of sources[i]


def load_eval_data(cfg: RunConfig, direction: str | None = None) -> EvalData:
    """Source and target test images after the dataset's direction, preprocessed like the method's official
    test loader (resize filter and aspect rule, size, centre crop: MethodConfig.test_resize), which treats
    both domains alike (so aligned ground truth stays aligned with its input)."""
    from bench.data import get_spec, load_domain

    spec = get_spec(cfg.dataset)
    size, crop = cfg.method_cfg.test_resize
    kw = dict(root=cfg.data.root, direction=direction or cfg.data.direction, size=size, crop=crop,
              pipeline=cfg.method_cfg.pipeline)
    return EvalData(load_domain(cfg.dataset, "test", "A", **kw), load_domain(cfg.dataset, "test", "B", **kw),
                    aligned=bool(spec.aligned))


def run_metrics(dataset: str, direction: str | None, method_cls) -> tuple[str, ...]:
    """Every metric a run of `method_cls` on `dataset` in `direction` can score (catalogue scopes)."""
    from bench.data import get_spec

    spec = get_spec(dataset)
    return catalog.scored(aligned=bool(spec.aligned), dataset=spec.dataset_metrics(direction),
                          method=method_cls.extra_metrics)


def wanted_metrics(cfg: RunConfig, method_cls, direction: str | None = None) -> list[str]:
    """The metrics this run scores in `direction` (default: the run's): `eval.metrics` if given, else all it can.

    `eval.metrics` was checked against the run's direction (`check_metrics`); a two-way method's reverse direction
    may offer fewer (Cityscapes photo->label has no DRN scores), and those are left out there.
    """
    available = run_metrics(cfg.dataset, direction or cfg.data.direction, method_cls)
    if cfg.eval.metrics:
        return [m for m in cfg.eval.metrics if m in available]
    return list(available)


def check_metrics(cfg: RunConfig, method_cls) -> None:
    """ConfigError (naming the key, the value and what is accepted) for `eval.metrics` and `train.select_metric`
    values that this run cannot score; called when the run config is built, before data or networks."""
    available = run_metrics(cfg.dataset, cfg.data.direction, method_cls)
    where = f"{cfg.method} on {cfg.dataset} {cfg.data.direction or ''}".rstrip()
    for m in cfg.eval.metrics:
        if m in catalog.REFUSED:
            raise ConfigError(f"eval.metrics={m}: {catalog.REFUSED[m]}")
        if m not in catalog.CATALOG:
            raise ConfigError(f"eval.metrics={m}: unknown metric{closest(m, available)}; accepted for {where}: "
                              f"{', '.join(available)}")
        if m not in available:
            scope = catalog.CATALOG[m].scope
            why = {"aligned": "needs an aligned dataset", "dataset": "only where the dataset spec lists it for the "
                   "direction", "method": "only for methods that declare it",
                   "published": "a published-only number"}.get(scope, scope)
            raise ConfigError(f"eval.metrics={m}: not scored for {where} ({why}); accepted: {', '.join(available)}")
    scored = cfg.eval.metrics or available
    selectable = [m for m in scored if catalog.CATALOG[m].eval_time]
    select = cfg.train.select_metric
    if select not in selectable:
        if not selectable:
            raise ConfigError(f"train.select_metric={select}: eval.metrics={','.join(scored)} has no metric the "
                              f"training loop can score; add one of {', '.join(catalog.names(eval_time=True))}")
        hint = closest(select, selectable) if select not in catalog.CATALOG else ""
        raise ConfigError(f"train.select_metric={select}: accepted (scored during training for {where}): "
                          f"{', '.join(selectable)}{hint}")


def _stack(ds, idx: list[int]) -> tuple[torch.Tensor, list[str]]:
    items = [ds[i] for i in idx]
    return torch.stack([it["image"] for it in items]), [it["path"] for it in items]


class Evaluator:
    """Scores a method on the test split; caches the reference images of the run on disk."""

    def __init__(self, cfg: RunConfig, run_dir: Path, device: torch.device, direction: str = "AtoB",
                 data: EvalData | None = None, compute: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        #: How the run computed (threads, precision switches; bench.precision.compute_record): in every fingerprint.
        self.compute = compute
        self.run_dir = Path(run_dir)
        self.device = device
        self.direction = direction
        #: The dataset direction this evaluator scores (the run's, or its reverse for a two-way method's B->A).
        self.dataset_direction = cfg.data.direction if direction == "AtoB" else _reverse(cfg)
        self.data = data if data is not None else load_eval_data(cfg, self.dataset_direction)
        self.sub = "" if direction == "AtoB" else "BtoA/"
        self.reference_dir = self.run_dir / "eval" / f"{self.sub}reference"
        self._write_reference()

    # ----------------------------------------------------------------- helpers
    def _write_reference(self) -> None:
        n = len(self.data.targets)
        if self.reference_dir.is_dir() and len(list(self.reference_dir.glob("*.png"))) == n:
            return
        for i in range(n):
            item = self.data.targets[i]
            save_png(to_uint8(item["image"][None])[0], self.reference_dir / f"{Path(item['path']).stem}.png")

    def _context(self) -> dict[str, Any]:
        mc = self.cfg.method_cfg
        size, crop = mc.test_resize
        return {"dataset": self.cfg.dataset, "direction": self.cfg.data.direction or "default",
                "translation": self.direction, "reference_split": "test", "image_size": crop or size,
                "test_resize": f"{mc.resize_filter} {mc.resize_aspect} {size}"
                               + (f", centre crop {crop}" if crop else ""),
                "fake_format": "png (uint8, floor as tensor2im)",
                **({"compute": self.compute} if self.compute is not None else {})}

    def _metrics_kwargs(self) -> dict[str, Any]:
        e = self.cfg.eval
        return dict(protocol=e.protocol, device=str(self.device), batch_size=e.batch_size, seed=self.cfg.seed,
                    inception_weights=e.inception_weights, context=self._context())

    @torch.no_grad()
    def _translate(self, method, x: torch.Tensor, z=None) -> torch.Tensor:
        return method.translate(x.to(self.device), z=z, direction=self.direction).cpu()

    def _fixed_z(self, method, n: int, stream: int = 0):
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + stream)
        return method.sample_z(n, generator=gen)

    def translate_batches(self, method, indices: list[int], batch_size: int = 8, stream_base: int = 0):
        """Yield (uint8 fakes, source paths) for the given source indices, in batches (eval mode).

        Latent codes (multimodal methods) come from streams `stream_base + batch start`: the position in the
        test loop, so a second translation of the same input (the official loop's wrap-around) gets new codes.
        """
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            x, paths = _stack(self.data.sources, idx)
            z = self._fixed_z(method, len(idx), stream=stream_base + start)
            if z is not None:
                z = z.to(self.device)
            yield to_uint8(self._translate(method, x, z)), paths

    @staticmethod
    def _guarded(compute, names):
        """Run a metric computation; when the image sets cannot support it (e.g. a test split of one image),
        report each metric unavailable with the reason instead of losing the whole run."""
        from bench.errors import DataError
        from bench.metrics import MetricResult

        try:
            return compute()
        except DataError as exc:
            _warn_once(f"metrics {', '.join(names)} unavailable: {exc}")
            return {m: MetricResult.missing(m, str(exc)) for m in names}

    # ----------------------------------------------------------------- quick eval during training
    def quick(self, method, n: int, metric: str) -> dict[str, float]:
        """Translate the first `n` test inputs and score `metric` against the full reference set."""
        from bench.metrics.evaluate import evaluate  # the function (the package attribute may be the module)

        count = len(self.data.sources) if n <= 0 else min(n, len(self.data.sources))
        fakes = torch.cat([f for f, _ in self.translate_batches(method, list(range(count)))])
        res = self._guarded(lambda: evaluate(self.reference_dir, fakes, metrics=(metric,), **self._metrics_kwargs()),
                            (metric,))[metric]
        if res.value is not None:
            return {metric: float(res.value)}
        _warn_once(f"in-training {metric} unavailable: {res.unavailable}")
        # Still log a curve: the first eval-time metric that needs no feature-network weights (SWD). It is only
        # recorded (eval/<name>), never used to select the best checkpoint.
        for other in FALLBACK_EVAL_METRICS:
            if other == metric:
                continue
            alt = self._guarded(lambda: evaluate(self.reference_dir, fakes, metrics=(other,),
                                                 **self._metrics_kwargs()), (other,))[other]
            if alt.value is not None:
                return {other: float(alt.value)}
        return {}

    def sample_grid(self, method, n: int = N_QUALITATIVE) -> torch.Tensor:
        """inputs | outputs (| ground truth) for the first n test inputs, as one uint8 image."""
        n = min(n, len(self.data.sources))
        x, _ = _stack(self.data.sources, list(range(n)))
        fakes = next(self.translate_batches(method, list(range(n)), batch_size=n))[0]
        rows = [to_uint8(x), fakes]
        if self.data.aligned:
            rows.append(to_uint8(_stack(self.data.targets, list(range(n)))[0]))
        return grid(rows)

    # ----------------------------------------------------------------- full evaluation
    def full(self, method, tag: str) -> dict[str, Any]:
        """Translate the test split into eval/<tag>/fake/*.png and compute every wanted metric."""
        from bench.metrics.evaluate import evaluate
        from bench.metrics.paired import paired_scores

        cfg = self.cfg
        n_src = len(self.data.sources)
        n = n_src if cfg.eval.n_test <= 0 else min(cfg.eval.n_test, n_src)
        fake_dir = self.run_dir / "eval" / f"{self.sub}{tag}" / "fake"
        qual_dir = self.run_dir / "eval" / f"{self.sub}{tag}" / "test"
        for fakes, paths in self.translate_batches(method, list(range(n))):
            for img, p in zip(fakes, paths):
                save_png(img, fake_dir / f"{Path(p).stem}.png")
        test_set = self._write_wraparound(method, fake_dir.parent / "fake_wrap", n, n_src)
        for i in range(min(N_QUALITATIVE, n)):
            item = self.data.sources[i]
            stem = Path(item["path"]).stem
            save_png(to_uint8(item["image"][None])[0], qual_dir / "inputs" / f"{stem}.png")
            (qual_dir / "outputs").mkdir(parents=True, exist_ok=True)
            (qual_dir / "outputs" / f"{stem}.png").write_bytes((fake_dir / f"{stem}.png").read_bytes())
            if self.data.aligned:  # the ground truth of that input, for the figures' last column
                truth = self.data.targets[i]
                save_png(to_uint8(truth["image"][None])[0], qual_dir / "targets" / f"{stem}.png")

        names = wanted_metrics(cfg, type(method), self.dataset_direction)
        kinds: dict[str, list[str]] = {}
        for m in names:
            kinds.setdefault(catalog.get(m).kind, []).append(m)
        results: dict[str, Any] = {}
        dist = kinds.get("distribution")
        # Every number records which checkpoint and which images it scored (bench.official).
        kwargs = self._metrics_kwargs()
        kwargs["context"] = {**kwargs["context"], "epoch_rule": tag if tag in EPOCH_RULES else "n/a",
                             "epoch_rule_meaning": EPOCH_RULES.get(tag, tag), "test_set": "per_input",
                             "reference_set": "test", "n_inputs": n, "official_loop_length": test_set["n_loop"]}
        if dist:
            results.update(self._guarded(lambda: evaluate(self.reference_dir, fake_dir, metrics=tuple(dist),
                                                          **kwargs), dist))
        pair = kinds.get("paired")
        if pair and self.data.aligned:
            # Ground truth of exactly the translated inputs (eval.n_test may translate a subset).
            fakes = sorted(fake_dir.glob("*.png"))
            truth = [self.reference_dir / f.name for f in fakes]
            results.update(self._guarded(lambda: paired_scores(truth, fakes, metrics=tuple(pair)), pair))
        seg = kinds.get("segmentation")
        if seg:
            scores = self._segmentation(fake_dir)
            results.update({m: scores[m] for m in seg})
        for m in kinds.get("diversity", ()):  # several samples per input: Method.sample_z
            results[m] = self._lpips(method)
        for m in kinds.get("reconstruction", ()):  # B from A and E(B): Method.reconstruct
            # e.g. BicycleGAN maps tested at 512 px, which its 256-px encoder cannot read: unavailable, with why.
            results[m] = self._guarded(lambda: {m: self._recon(method)}, [m])[m]
        results = {m: results[m] for m in names if m in results}
        return {"metrics": {k: v.to_dict() for k, v in results.items()}, "n_test": n, "fake_dir": str(fake_dir),
                "test_set": test_set}

    def _write_wraparound(self, method, wrap_dir: Path, n: int, n_src: int) -> dict[str, Any]:
        """The official test loop's repeats (positions |A|..max(|A|,|B|)-1) as PNGs beside the per-input fakes.

        Nothing is scored here: the headline numbers use one fake per input (what the official fake folder
        holds). The repeats let `bench reproduce` re-score under the wrap-around count without the weights.
        """
        n_b = len(self.data.targets)
        loop = official_loop(n_src, n_b)
        info = {"rule": "per_input", "meaning": TEST_SETS["per_input"], "n_inputs": n, "n_targets": n_b,
                "n_loop": len(loop), "wrap_dir": None, "wrap_files": []}
        if n < n_src or len(loop) <= n_src:  # a subset was translated, or nothing wraps around
            return info
        repeats = loop[n_src:]
        files = []
        for fakes, paths in self.translate_batches(method, repeats, stream_base=n_src):
            for img, p in zip(fakes, paths):
                name = f"{Path(p).stem}__loop{n_src + len(files)}.png"  # its position in the official loop
                save_png(img, wrap_dir / name)
                files.append(name)
        info.update(wrap_dir=str(wrap_dir), wrap_files=files)
        return info

    def _segmentation(self, fake_dir: Path):
        from bench.metrics import segmentation_scores

        label_dir = self.run_dir / "eval" / f"{self.sub}labels"
        if not label_dir.is_dir():
            for i in range(len(self.data.sources)):
                item = self.data.sources[i]
                save_png(to_uint8(item["image"][None])[0], label_dir / f"{Path(item['path']).stem}.png")
        return segmentation_scores(fake_dir, label_dir, weights=self.cfg.eval.seg_weights, device=str(self.device))

    def _lpips(self, method):
        from bench.metrics.lpips_diversity import lpips_diversity

        e = self.cfg.eval
        n = min(e.lpips_inputs, len(self.data.sources))
        x, _ = _stack(self.data.sources, list(range(n)))
        gen = torch.Generator().manual_seed(self.cfg.seed)
        outs = []
        for i in range(n):
            xi = x[i:i + 1].expand(e.lpips_samples, -1, -1, -1).to(self.device)
            z = method.sample_z(e.lpips_samples, generator=gen).to(self.device)
            outs.append(method.translate(xi, z=z, direction=self.direction).cpu())
        return lpips_diversity(torch.stack(outs), device=str(self.device))

    def _recon(self, method):
        """BicycleGAN Table 1: mean ||B - G(A, E(B))||_1 over the test pairs (images in [-1, 1])."""
        from bench.metrics import MetricResult

        total, count = 0.0, 0
        for start in range(0, len(self.data.sources), 8):
            idx = list(range(start, min(start + 8, len(self.data.sources))))
            a, _ = _stack(self.data.sources, idx)
            b, _ = _stack(self.data.targets, idx)
            with torch.no_grad():
                rec = method.reconstruct(a.to(self.device), b.to(self.device)).cpu()
            total += (rec - b).abs().mean(dim=(1, 2, 3)).sum().item()
            count += len(idx)
        return MetricResult(name="recon_l1", value=total / count, std=None, details={},
                            unavailable=None, fingerprint={"metric": "recon_l1", "n": count, "range": "[-1,1]",
                                                           "protocol": "BicycleGAN Table 1: ||B - G(A, mu(E(B)))||_1",
                                                           **self._context()})


def _reverse(cfg: RunConfig) -> str:
    """The dataset direction opposite to the run's (for scoring two-way methods backwards)."""
    from bench.data import get_spec

    src, dst = get_spec(cfg.dataset).resolve_direction(cfg.data.direction)
    return f"{dst}2{src}"


def sample_grid_png(evaluator: Evaluator, method, path: Path) -> Path:
    save_png(evaluator.sample_grid(method), path)
    return path

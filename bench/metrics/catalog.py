"""Every metric bench knows, once: name, direction, unit and scale, how it is printed, what calls for it.

Everything else (the evaluation, the training loop's best-checkpoint rule, tables, plots, studies, the
published-number schema) reads this catalogue instead of keeping its own list.

Which metrics a run scores is decided by data, not by names in the harness:
- `scope="always"`: every translation (FID, KID, SWD);
- `scope="aligned"`: datasets with ground truth for each input (`DatasetSpec.aligned`: L1, PSNR, SSIM);
- `scope="dataset"`: only where a dataset spec lists it for the direction (Cityscapes label->photo: DRN scores);
- `scope="method"`: only where a method declares it (`Method.extra_metrics`: LPIPS diversity, BicycleGAN's
  reconstruction error);
- `scope="published"`: numbers papers print that bench does not compute (time, memory, user studies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from bench.errors import UsageError, closest

#: How a metric is computed (which entry point of bench.metrics).
KINDS = ("distribution", "paired", "segmentation", "diversity", "reconstruction", "cost", "user_study")
SCOPES = ("always", "aligned", "dataset", "method", "published")


@dataclass(frozen=True)
class Metric:
    """One metric's facts."""

    name: str
    #: Column header in tables and axis label in plots ("KID×100").
    label: str
    higher_is_better: bool
    kind: str
    scope: str
    #: The unit bench reports the value in ("" for unitless, "×100" for KID, "%", "dB", "s/iter", ...).
    unit: str
    #: Decimals when printed in a table.
    decimals: int
    description: str
    #: The training loop can score it on the held-out subset at every evaluation epoch (selection, pruning).
    eval_time: bool = False

    @property
    def direction(self) -> str:
        """Optuna's word for it: 'maximize' or 'minimize'."""
        return "maximize" if self.higher_is_better else "minimize"

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def scored(self) -> bool:
        """bench computes it (as opposed to a published-only number)."""
        return self.scope != "published"

    def format(self, value: float | None) -> str:
        """The value as a table prints it ('—' for none)."""
        return "—" if value is None else f"{value:.{self.decimals}f}"


CATALOG: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", "FID", False, "distribution", "always", "", 1,
           "Fréchet Inception Distance (pytorch-fid InceptionV3 pool3)", eval_time=True),
    Metric("kid", "KID×100", False, "distribution", "always", "×100", 2,
           "Kernel Inception Distance ×100 (mean ± std over subsets)", eval_time=True),
    Metric("swd", "SWD", False, "distribution", "always", "×1e3", 1,
           "PGGAN sliced Wasserstein distance ×1e3, mean over pyramid levels", eval_time=True),
    Metric("l1", "L1", False, "paired", "aligned", "", 3, "mean |fake − real| on [−1, 1] against ground truth"),
    Metric("psnr", "PSNR", True, "paired", "aligned", "dB", 2, "PSNR against ground truth"),
    Metric("ssim", "SSIM", True, "paired", "aligned", "", 3, "SSIM (Gaussian 11×11, σ 1.5) against ground truth"),
    Metric("miou", "mIoU", True, "segmentation", "dataset", "%", 1,
           "Cityscapes DRN-D-22 mean IoU of generated photos vs the input label maps"),
    Metric("pixel_acc", "pixAcc", True, "segmentation", "dataset", "%", 1, "Cityscapes DRN-D-22 pixel accuracy"),
    Metric("class_acc", "classAcc", True, "segmentation", "dataset", "%", 1,
           "Cityscapes DRN-D-22 mean class accuracy"),
    Metric("lpips_diversity", "LPIPS div.", True, "diversity", "method", "", 3,
           "mean LPIPS between consecutive samples per input (BicycleGAN protocol)"),
    Metric("recon_l1", "Recon. L1", False, "reconstruction", "method", "", 3,
           "BicycleGAN Table 1: mean ||B − G(A, E(B))||₁ on [−1, 1]"),
    Metric("sec_per_iter", "s/iter", False, "cost", "published", "s/iter", 2, "training time per iteration"),
    Metric("train_hours", "hours", False, "cost", "published", "h", 0, "training time"),
    Metric("params_m", "params (M)", False, "cost", "published", "M", 3, "parameters, millions"),
    Metric("memory_gb", "memory (GB)", False, "cost", "published", "GB", 1, "training memory"),
    Metric("user_quality", "user Q (%)", True, "user_study", "published", "%", 1, "user study: quality preference"),
    Metric("user_target", "user T (%)", True, "user_study", "published", "%", 1, "user study: target-domain match"),
    Metric("user_consistency", "user C (%)", True, "user_study", "published", "%", 1,
           "user study: consistency with the input"),
)}

#: Names that look like metrics but are deliberately not offered, with the reason.
REFUSED = {
    "is": "the Inception Score needs the Inception's 1008-way fc layer (logits); bench's FID protocol uses the "
          "pool3 trunk only (the offline weights have no fc), so IS is not offered: use fid/kid",
}
REFUSED["inception_score"] = REFUSED["is"]


def get(name: str) -> Metric:
    """The catalogue entry of `name` (a metric, or a detail of one such as `swd_level_16` or `kid_std`)."""
    if name in CATALOG:
        return CATALOG[name]
    if name in REFUSED:
        raise UsageError(REFUSED[name])
    for known in sorted(CATALOG, key=len, reverse=True):  # a detail key: the longest metric name it starts with
        if name.startswith(known + "_"):
            return CATALOG[known]
    raise UsageError(f"unknown metric {name!r}{closest(name, CATALOG)}; known: {', '.join(CATALOG)}")


def higher_is_better(name: str) -> bool:
    return get(name).higher_is_better


def is_better(name: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` for metric `name` (anything beats no value)."""
    if old is None:
        return True
    return new > old if higher_is_better(name) else new < old


def names(*, kind: str | Iterable[str] | None = None, scope: str | Iterable[str] | None = None,
          scored: bool | None = None, eval_time: bool | None = None) -> tuple[str, ...]:
    """Metric names filtered by kind, scope, whether bench scores them, and whether they are eval-time."""
    kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
    scopes = {scope} if isinstance(scope, str) else set(scope) if scope is not None else None
    return tuple(m.name for m in CATALOG.values()
                 if (kinds is None or m.kind in kinds) and (scopes is None or m.scope in scopes)
                 and (scored is None or m.scored == scored) and (eval_time is None or m.eval_time == eval_time))


def scored(*, aligned: bool, dataset: Iterable[str] = (), method: Iterable[str] = ()) -> tuple[str, ...]:
    """The metrics a run scores, by each metric's scope, in catalogue order.

    Args:
        aligned: the data has ground truth for each input (`DatasetSpec.aligned`): scope "aligned" metrics.
        dataset: the scope-"dataset" metrics the dataset lists for the run's direction (`DatasetSpec.eval_metrics`).
        method: the scope-"method" metrics the method supports (`Method.extra_metrics`).
    """
    listed = {"dataset": set(dataset), "method": set(method)}
    for scope, names_ in listed.items():
        wrong = sorted(n for n in names_ if n not in CATALOG or CATALOG[n].scope != scope)
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not catalogue metrics of scope {scope!r}")
    return tuple(m.name for m in CATALOG.values()
                 if m.scope == "always" or (m.scope == "aligned" and aligned) or m.name in listed.get(m.scope, ()))


def parse_metrics(text: str | Sequence[str], *, flag: str = "--metric", scored_only: bool = False) -> list[str]:
    """`fid,kid`, `['fid', 'kid']` or `['fid,kid', 'ssim']` -> validated names, in order, without repeats."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    out = list(dict.fromkeys(m.strip().lower() for m in items if m.strip()))
    if not out:
        raise UsageError(f"{flag} needs at least one metric name, e.g. {flag} fid,kid")
    for m in out:
        try:
            metric = get(m)
        except UsageError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        if scored_only and not metric.scored:
            raise UsageError(f"{flag}: {m} is a published-only number (bench does not compute it); scored metrics: "
                             f"{', '.join(names(scored=True))}")
    return out

"""Run configuration: typed, frozen, validated at the boundary.

A run = method config (paper defaults of that method, then the preset, then `--set` overrides) + data,
training-loop and evaluation settings. `--set` keys are `method.x`, `data.x`, `train.x`, `eval.x`, or a bare
method field (`--set lambda_NCE=2`). The canonical JSON of the resolved config and its hash go to MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from bench.errors import ConfigError, closest
from methods.config import MethodConfig, apply_overrides


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is read."""

    #: Dataset folder in its official layout (default: $BENCH_DATA_ROOT/<name>, then the bench cache).
    root: str | None = None
    #: Translation direction, e.g. "AtoB"/"BtoA" or a dataset-specific name ("cat2dog"); None = dataset default.
    direction: str | None = None
    #: Use only the first N training items (0 = all); for quick experiments, recorded with the run.
    max_train: int = 0

    def __post_init__(self) -> None:
        if self.max_train < 0:
            raise ConfigError(f"data.max_train must be >= 0, got {self.max_train}")


#: Training precisions (`train.precision`, bench.precision); the first is the papers' and the default.
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop's own settings (not the algorithm's)."""

    device: str = "auto"
    #: Evaluate every N epochs (0 = about 10 evaluations per run); the final epoch is always evaluated.
    eval_every: int = 0
    #: Held-out test inputs translated for the in-training evaluation (0 = the whole test split).
    eval_n: int = 100
    #: Metric that selects the "best" checkpoint (lower is better for fid/kid/swd).
    select_metric: str = "fid"
    #: Also write a checkpoint every N iterations inside an epoch (0 = only at epoch ends).
    save_every: int = 0
    #: Log training losses every N iterations.
    log_every: int = 10
    deterministic: bool = True
    #: CPU intra-op threads; 0 = the automatic rule (bench.threads: 1 for images up to 32 px, else the cores
    #: available to the run). Part of the protocol: the resolved count is what the run records.
    threads: int = 0
    #: Stop after N iterations in total (0 = the full schedule). For debugging; recorded with the run.
    max_iters: int = 0
    progress: bool = True
    #: DataLoader worker processes that decode training images off the training thread (0 = in the loop).
    #: Same batches in the same order as 0 (bench.batches); a speed setting only.
    num_workers: int = 0
    #: Autocast precision of the training step: fp32 (the papers'), bf16, or fp16 (with a GradScaler).
    precision: str = "fp32"
    #: Nets and batches in channels_last memory format (faster convolutions on tensor cores).
    channels_last: bool = False
    #: torch.compile the nets (first iterations are slow while kernels compile).
    compile: bool = False
    #: Allow TF32 matmuls/convolutions on Ampere+ GPUs (a no-op on CPU).
    tf32: bool = False

    def __post_init__(self) -> None:
        for name in ("eval_every", "eval_n", "save_every", "threads", "max_iters", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")
        if self.device not in ("auto", "cpu") and not self.device.startswith(("cuda", "mps")):
            raise ConfigError(f"train.device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class EvalConfig:
    """What is scored after training, and how."""

    #: Metrics to compute; empty = every metric the dataset and method call for.
    metrics: tuple[str, ...] = ()
    protocol: str = "legacy_pytorch"
    inception_weights: str | None = None
    seg_weights: str | None = None
    #: Test inputs translated for the final scores (0 = the whole test split).
    n_test: int = 0
    #: LPIPS diversity protocol (BicycleGAN: 100 inputs x 20 samples -> 19 consecutive pairs each).
    lpips_inputs: int = 100
    lpips_samples: int = 20
    batch_size: int = 50
    #: Also score the "best" checkpoint on the full test split (besides "last").
    score_best: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in ("legacy_pytorch", "clean"):
            raise ConfigError(f"eval.protocol={self.protocol!r}: use legacy_pytorch or clean")
        # Checked now, not after training: a bad value would otherwise fail (or score nothing) at the end.
        for name, least in (("n_test", 0), ("lpips_inputs", 1), ("lpips_samples", 2), ("batch_size", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"eval.{name}={getattr(self, name)}: must be >= {least}"
                                  + (" (0 = the whole test split)" if name == "n_test" else "")
                                  + (" (LPIPS diversity compares consecutive samples)" if name == "lpips_samples"
                                     else ""))
        for name in ("inception_weights", "seg_weights"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_file():
                raise ConfigError(f"eval.{name}={value}: no such file")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run (method, dataset, seed)."""

    method: str
    dataset: str
    seed: int
    preset: str
    method_cfg: MethodConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str = "runs"
    tracking_uri: str | None = None
    study: str | None = None
    trial: int | None = None
    run_name_suffix: str | None = None

    @property
    def run_dir(self) -> Path:
        name = f"seed{self.seed}" + (f"-{self.run_name_suffix}" if self.run_name_suffix else "")
        return Path(self.out) / self.dataset / self.method / name

    @property
    def run_name(self) -> str:
        return f"{self.method}/seed{self.seed}" + (f"/{self.run_name_suffix}" if self.run_name_suffix else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "dataset": self.dataset, "seed": self.seed, "preset": self.preset,
            "method_cfg": dataclasses.asdict(self.method_cfg), "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train), "eval": dataclasses.asdict(self.eval),
            "out": self.out, "tracking_uri": self.tracking_uri, "study": self.study, "trial": self.trial,
            "run_name_suffix": self.run_name_suffix,
        }

    def algorithm_dict(self) -> dict[str, Any]:
        """The parts that determine the numbers (not where things are written or how progress is shown)."""
        return algorithm_dict_of(self.to_dict())

    def config_hash(self) -> str:
        return config_hash_of(self.to_dict())

    def flat_params(self) -> dict[str, str]:
        """Flattened `section.field` -> string, for MLflow params.

        Settings that may legitimately change when a run is resumed (device, loader workers, progress display,
        logging cadence) are left out: MLflow params are immutable once logged.
        """
        out = {"method": self.method, "dataset": self.dataset, "seed": str(self.seed), "preset": self.preset}
        for prefix, obj in (("method", self.method_cfg), ("data", self.data), ("train", self.train), ("eval", self.eval)):
            for f in fields(obj):
                if prefix == "train" and f.name in RESUMABLE_TRAIN_FIELDS:
                    continue
                value = getattr(obj, f.name)
                out[f"{prefix}.{f.name}"] = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
        return out


def algorithm_dict_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`RunConfig.algorithm_dict` of a `to_dict()` document (a saved config.json too; extra keys are ignored)."""
    keys = ("method", "dataset", "seed", "preset", "method_cfg", "data", "train", "eval")
    d = json.loads(json.dumps({k: doc.get(k) for k in keys}, default=str))
    d["train"] = {k: v for k, v in (d.get("train") or {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
    return d


def config_hash_of(doc: Mapping[str, Any]) -> str:
    """`RunConfig.config_hash` of a `to_dict()` document, e.g. the config.json a checkpoint was written under."""
    blob = json.dumps(algorithm_dict_of(doc), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


#: Train settings that do not change the numbers and may differ between a run and its resumption.
#: `threads` is not one of them: the thread count changes the numbers (bench.threads).
RESUMABLE_TRAIN_FIELDS = ("progress", "log_every", "save_every", "device", "num_workers")

SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def split_overrides(overrides: Mapping[str, Any], method_cfg_cls: type,
                    method: str | None = None) -> tuple[dict, dict[str, dict]]:
    """Split `--set` keys into method overrides and per-section overrides; unknown sections are errors.

    `method.x` and a bare `x` are method fields (a bare key must be one of `method_cfg_cls`'s fields);
    `data.x`, `train.x`, `eval.x` go to those sections. This is the one place that reads a key's section.
    A key may be scoped to one method, `cut.lambda_NCE=2`: it applies when `method` is "cut" and is skipped
    for every other registered method (so one `--set` list serves `bench run --methods all`).
    """
    method_over: dict[str, Any] = {}
    sections: dict[str, dict] = {k: {} for k in SECTIONS}
    method_fields = {f.name for f in fields(method_cfg_cls)}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot and head == "method":
            method_over[rest] = value
        elif dot and head in SECTIONS:
            sections[head][rest] = value
        elif dot and head in _method_names():
            if head == method:
                method_over[rest] = value
        elif not dot:
            if key not in method_fields:
                allowed = sorted(method_fields)
                raise ConfigError(f"unknown option {key!r} for {method_cfg_cls.__name__}{closest(key, allowed)}; "
                                  f"method options: {', '.join(allowed)}; other sections: data.*, train.*, eval.*")
            method_over[key] = value
        else:
            raise ConfigError(f"unknown option section {head!r} in {key!r}{closest(head, [*SECTIONS, 'method'])}; "
                              "use method., data., train., eval. or a method name (cut.lambda_NCE=2)")
    return method_over, sections


def _method_names() -> list[str]:
    from methods.registry import names

    return names()


def build_section(cls, overrides: Mapping[str, Any], base=None):
    """Instantiate a section dataclass with overrides parsed to the declared types."""
    obj = base if base is not None else cls()
    return apply_overrides(obj, dict(overrides), prefix=f"{cls.__name__.replace('Config', '').lower()}.")


def parse_set(items: list[str] | None, *, flag: str = "--set",
              example: str = "lambda_NCE=2 or --set train.eval_every=5") -> dict[str, str]:
    """Parse repeated `--set key=value` strings into a dict (ConfigError for a malformed item).

    The one parser of KEY=VALUE command-line items (`bench run|study|import --set`, `bench eval --context`);
    it imports neither torch nor a method, so read-only commands stay light.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected key=value (e.g. {flag} {example})")
        out[key.strip()] = value.strip()
    return out

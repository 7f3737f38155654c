"""Typed, frozen method configurations with validation and dotted overrides.

Every method declares a frozen dataclass of its paper defaults (subclassing `MethodConfig`). Overrides
arrive as strings from the CLI (`--set lambda_NCE=2`) or as Python values; `apply_overrides` parses them to
the field's type and rejects unknown keys with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping

from bench.pipeline import ASPECTS, FILTER_NAMES, SAMPLINGS, Pipeline
from bench.errors import ConfigError, closest


@dataclass(frozen=True)
class MethodConfig:
    """Fields shared by every method: data sizes, schedule, optimiser, init, network widths.

    Defaults are the CycleGAN/CUT code defaults (reference/methods.md §0); each method overrides its own.
    """

    # data (CGr/CUTr `resize_and_crop`: load 286 -> random crop 256 -> random flip)
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    #: The official loader's rule (bench/data/transforms.py): PIL filter of the resize step,
    resize_filter: str = "bicubic"
    #: square (load, load) or shorter_side (the shorter side to load, aspect kept: MUNIT's Resize(new_size)),
    resize_aspect: str = "square"
    #: flip before resizing (NICE-GAN's and MUNIT's Compose order) instead of after cropping,
    flip_first: bool = False
    #: and how the unpaired domains are drawn: random_b (B with replacement), cycle (NICE-GAN), zip (MUNIT).
    sampling: str = "random_b"
    #: Test-time resize (0 = crop_size; with shorter_side: load_size, MUNIT's test.py) and centre crop (0 = none).
    test_load_size: int = 0
    test_crop_size: int = 0
    # schedule: constant lr for n_epochs, then linear decay to ~0 over n_epochs_decay (CGr networks.py)
    n_epochs: int = 100
    n_epochs_decay: int = 100
    warmup_epochs: int = 0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # networks
    ngf: int = 64
    ndf: int = 64
    init_type: str = "normal"
    init_gain: float = 0.02

    CHOICES: typing.ClassVar[dict[str, tuple]] = {
        "init_type": ("normal", "xavier", "kaiming", "orthogonal", "none"),
        "resize_filter": FILTER_NAMES, "resize_aspect": ASPECTS, "sampling": SAMPLINGS,
    }
    #: Fields that must be finite and > 0 where a config has them: learning rates and softmax temperatures
    #: (lr=0 never trains, nce_T=0 divides by zero). Every other float field must be finite (no nan/inf).
    POSITIVE: typing.ClassVar[tuple[str, ...]] = ("lr", "lr_G", "lr_D", "lr_E", "lr_F", "nce_T", "T")
    #: Stride-2 stages of the generator; crop_size must be a multiple of 2**DOWNSAMPLING, or the decoder does not
    #: restore the input size (CycleGAN crashes on the residual sum, CUT silently returns another size). 2 = the
    #: ResNet generator of the CycleGAN/CUT code. Deeper generators check their own depth (pix2pix's U-Net).
    DOWNSAMPLING: typing.ClassVar[int] = 2

    def __post_init__(self) -> None:
        self.validate()

    def stride_stages(self) -> int:
        """How many times the generator halves the image (DOWNSAMPLING unless the depth is a setting)."""
        return self.DOWNSAMPLING

    def validate(self) -> None:
        """Check types, choices and ranges; raise ConfigError naming the field."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            _check_type(type(self).__name__, f.name, value, hints[f.name])
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value}: must be a finite number")
        for name in self.POSITIVE:
            if hasattr(self, name) and not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be a finite number > 0")
        for name, allowed in self.CHOICES.items():
            if hasattr(self, name) and getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{type(self).__name__}.{name}={getattr(self, name)!r} is not one of {list(allowed)}"
                )
        for name in ("load_size", "crop_size", "batch_size", "ngf", "ndf"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_epochs", "n_epochs_decay", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_epochs + self.n_epochs_decay < 1:
            raise ConfigError("n_epochs + n_epochs_decay must be >= 1")
        if self.load_size < self.crop_size:
            raise ConfigError(f"load_size ({self.load_size}) must be >= crop_size ({self.crop_size})")
        stages = max(self.stride_stages(), 0)
        multiple = 2 ** stages
        if self.crop_size % multiple:
            fits = (self.crop_size // multiple) * multiple
            raise ConfigError(f"crop_size={self.crop_size}: must be a multiple of {multiple} (divisible by "
                              f"2**{stages}: the generator halves the image {stages} times), "
                              f"e.g. {max(fits, multiple)} or {fits + multiple}")
        if self.test_load_size < 0 or self.test_crop_size < 0:
            raise ConfigError("test_load_size and test_crop_size must be >= 0 (0 = the default)")
        size, crop = self.test_resize
        if crop > size:
            raise ConfigError(f"test_crop_size ({crop}) must be <= the test resize ({size})")

    @property
    def pipeline(self) -> Pipeline:
        """The data rule of this config's official loader (filter, aspect, flip order, sampling)."""
        return Pipeline(self.resize_filter, self.resize_aspect, self.flip_first, self.sampling)

    @property
    def test_resize(self) -> tuple[int, int]:
        """(resize, centre crop) of the test inputs; crop 0 = no crop."""
        default = self.crop_size if self.resize_aspect == "square" else self.load_size
        return self.test_load_size or default, self.test_crop_size

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


NET_D_CHOICES = ("basic", "n_layers", "pixel")
NORM_CHOICES = ("instance", "batch", "none")
GAN_MODES = ("lsgan", "vanilla", "wgangp", "nonsaturating", "hinge")


@dataclass(frozen=True)
class CUTFamilyConfig(MethodConfig):
    """The CUT code base's networks and schedule, shared by CUT/FastCUT, DCLGAN/SimDCL, QS-Attn, EnCo, F/LSeSim.

    Anti-aliased ResNet-9 generator and 70x70 PatchGAN, xavier(0.02) init, 200 + 200 epochs
    (taesungp/contrastive-unpaired-translation@b3ac297 options; reference/methods.md §2.4).
    """

    n_epochs: int = 200
    n_epochs_decay: int = 200
    init_type: str = "xavier"
    n_blocks: int = 9
    netD: str = "basic"
    n_layers_D: int = 3
    norm: str = "instance"
    antialias: bool = True
    antialias_up: bool = True
    gan_mode: str = "lsgan"
    #: CUT's unaligned_dataset.py stops the load->crop jitter after n_epochs (the decay phase).
    finetune_no_jitter: bool = True

    CHOICES: typing.ClassVar[dict[str, tuple]] = {**MethodConfig.CHOICES, "netD": NET_D_CHOICES,
                                                  "norm": NORM_CHOICES, "gan_mode": GAN_MODES}

    @property
    def generator_layers(self) -> int:
        """Number of modules in the ResNet generator's `model` Sequential (what nce_layers index)."""
        down = 4 if self.antialias else 3
        up = 4 if self.antialias_up else 3
        return 4 + 2 * down + self.n_blocks + 2 * up + 3

    def check_generator_layers(self, name: str, layers: tuple[int, ...]) -> None:
        n = self.generator_layers
        if not layers or any(not 0 <= i < n for i in layers):
            raise ConfigError(f"{name} {list(layers)}: each must index the generator's {n} layers (0..{n - 1})")

    def check_at_least(self, minimum: int | float, *names: str) -> None:
        for name in names:
            if getattr(self, name) < minimum:
                raise ConfigError(f"{name} must be >= {minimum}, got {getattr(self, name)}")


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{owner}.{name} must be a list, got {value!r}")
        return
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{owner}.{name}={value!r} is not one of {list(typing.get_args(hint))}")
        return
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{owner}.{name} must be {hint.__name__}, got {value!r}")


def parse_value(text: str, hint: Any, key: str) -> Any:
    """Parse a CLI string into the type a config field declares."""
    if not isinstance(text, str):
        return text
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if origin in (tuple, list):
            (inner,) = typing.get_args(hint)[:1] or (str,)
            parts = [p for p in text.replace(" ", "").split(",") if p]
            return tuple(parse_value(p, inner, key) for p in parts)
        if origin is typing.Literal:
            return text
        return text
    except ValueError:
        raise ConfigError(f"--set {key}={text!r}: expected {getattr(hint, '__name__', hint)}") from None


def apply_overrides(cfg, overrides: Mapping[str, Any], *, prefix: str = ""):
    """Return a copy of the frozen dataclass `cfg` with `overrides` applied (unknown keys are errors)."""
    if not overrides:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in fields(cfg)]
    changes = {}
    for key, raw in overrides.items():
        if key not in names:
            raise ConfigError(
                f"unknown option {prefix}{key!r} for {type(cfg).__name__}{closest(key, names)}; "
                f"valid: {', '.join(sorted(names))}"
            )
        changes[key] = parse_value(raw, hints[key], prefix + key)
    return dataclasses.replace(cfg, **changes)


def config_json(cfg) -> str:
    """Canonical JSON of a dataclass config (sorted keys), for hashing and tracking."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)

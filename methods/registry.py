"""Method registry: one line per method: name -> where its class lives, its paper spelling, its extra metrics.

Adding a method = one file in `methods/` + one line in `METHODS` below. Modules are imported on first use, and
this file imports neither torch nor a method module, so listing names and labels is cheap (`bench study status`,
`bench table`).

`extra_metrics` are the catalogue metrics of scope "method" (bench.metrics.catalog) the method supports beyond
those every run scores: LPIPS diversity for multimodal methods, the encoder's reconstruction error for the
BicycleGAN variants that have an encoder. `get` hands them to the class as `Method.extra_metrics`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import UnknownNameError, closest

if TYPE_CHECKING:  # pragma: no cover
    from methods.base import Method


@dataclass(frozen=True)
class Entry:
    """One registered method."""

    #: "module:Class"
    target: str
    #: How the papers spell it (table rows, plot legends).
    label: str
    #: Metrics of scope "method" it supports (bench.metrics.catalog).
    extra_metrics: tuple[str, ...] = ()


_DIVERSE = ("lpips_diversity",)  # several outputs per input (a latent code)
_ENCODER = ("lpips_diversity", "recon_l1")  # ... and an encoder E(B) to reconstruct B from

METHODS: dict[str, Entry] = {
    "cyclegan": Entry("methods.cyclegan:CycleGAN", "CycleGAN"),
    "cut": Entry("methods.cut:CUT", "CUT"),
    "fastcut": Entry("methods.cut:FastCUT", "FastCUT"),
    "dclgan": Entry("methods.dclgan:DCLGAN", "DCLGAN"),
    "simdcl": Entry("methods.dclgan:SimDCL", "SimDCL"),
    "qsattn_global": Entry("methods.qsattn:QSAttnGlobal", "QS-Attn (Global)"),
    "qsattn_local": Entry("methods.qsattn:QSAttnLocal", "QS-Attn (Local)"),
    "qsattn_local_global": Entry("methods.qsattn:QSAttnLocalGlobal", "QS-Attn (Local+Global)"),
    "enco": Entry("methods.enco:EnCo", "EnCo"),
    "fsesim": Entry("methods.fsesim:FSeSim", "FSeSim"),
    "lsesim": Entry("methods.fsesim:LSeSim", "LSeSim"),
    "pix2pix": Entry("methods.pix2pix:Pix2Pix", "pix2pix"),
    "pix2pix_noise": Entry("methods.bicyclegan:Pix2PixNoise", "pix2pix+noise", _DIVERSE),
    "cae_gan": Entry("methods.bicyclegan:CAEGAN", "cAE-GAN", _ENCODER),
    "cvae_gan": Entry("methods.bicyclegan:CVAEGAN", "cVAE-GAN", _ENCODER),
    "cvae_gan_pp": Entry("methods.bicyclegan:CVAEGANPlusPlus", "cVAE-GAN++", _ENCODER),
    "clr_gan": Entry("methods.bicyclegan:CLRGAN", "cLR-GAN", _ENCODER),
    "bicyclegan": Entry("methods.bicyclegan:BicycleGAN", "BicycleGAN", _ENCODER),
    "nicegan": Entry("methods.nicegan:NICEGAN", "NICE-GAN"),
    "nicegan_light": Entry("methods.nicegan:NICEGANLight", "NICE-GAN (light)"),
    "munit": Entry("methods.munit:MUNIT", "MUNIT", _DIVERSE),
}

_loaded: dict[str, type["Method"]] = {}


def names() -> list[str]:
    """Every registered method name, in registry order."""
    return list(METHODS)


def label(name: str) -> str:
    """The paper spelling of a registered method ('qsattn_global' -> 'QS-Attn (Global)')."""
    return _entry(name).label


def _entry(name: str) -> Entry:
    if name not in METHODS:
        raise UnknownNameError(
            f"unknown method {name!r}{closest(name, METHODS)}; valid: {', '.join(METHODS)}"
        )
    return METHODS[name]


def get(name: str) -> type["Method"]:
    """The Method class registered under `name` (UnknownNameError listing valid names otherwise)."""
    entry = _entry(name)
    if name not in _loaded:
        from methods.base import Method

        module, _, attr = entry.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{entry.target} is not a methods.base.Method subclass")
        cls.name = name
        if entry.extra_metrics:
            cls.extra_metrics = tuple(entry.extra_metrics)
        _loaded[name] = cls
    return _loaded[name]


def build(name: str, *, preset: str = "paper", device: str = "cpu", dataset: str | None = None,
          **overrides: Any) -> "Method":
    """Build method `name` with the preset (the official recipe for `dataset`) and `overrides`."""
    cls = get(name)
    cfg = cls.make_config(preset, overrides, dataset=dataset)
    return cls(cfg, device=device)

"""Method registry: one line per method, name -> "module:Class". Modules are imported on first use.

Adding a method = one file in `methods/` + one line in `METHODS` below.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.errors import UnknownNameError, closest
from methods.base import Method

METHODS: dict[str, str] = {
    "cyclegan": "methods.cyclegan:CycleGAN",
    "cut": "methods.cut:CUT",
    "fastcut": "methods.cut:FastCUT",
    "dclgan": "methods.dclgan:DCLGAN",
    "simdcl": "methods.dclgan:SimDCL",
    "qsattn_global": "methods.qsattn:QSAttnGlobal",
    "qsattn_local": "methods.qsattn:QSAttnLocal",
    "qsattn_local_global": "methods.qsattn:QSAttnLocalGlobal",
    "enco": "methods.enco:EnCo",
    "fsesim": "methods.fsesim:FSeSim",
    "lsesim": "methods.fsesim:LSeSim",
    "pix2pix": "methods.pix2pix:Pix2Pix",
    "pix2pix_noise": "methods.bicyclegan:Pix2PixNoise",
    "cae_gan": "methods.bicyclegan:CAEGAN",
    "cvae_gan": "methods.bicyclegan:CVAEGAN",
    "cvae_gan_pp": "methods.bicyclegan:CVAEGANPlusPlus",
    "clr_gan": "methods.bicyclegan:CLRGAN",
    "bicyclegan": "methods.bicyclegan:BicycleGAN",
    "nicegan": "methods.nicegan:NICEGAN",
    "nicegan_light": "methods.nicegan:NICEGANLight",
    "munit": "methods.munit:MUNIT",
}

_loaded: dict[str, type[Method]] = {}


def names() -> list[str]:
    """Every registered method name, in registry order."""
    return list(METHODS)


def get(name: str) -> type[Method]:
    """The Method class registered under `name` (UnknownNameError listing valid names otherwise)."""
    if name not in METHODS:
        raise UnknownNameError(
            f"unknown method {name!r}{closest(name, METHODS)}; valid: {', '.join(METHODS)}"
        )
    if name not in _loaded:
        module, _, attr = METHODS[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{METHODS[name]} is not a methods.base.Method subclass")
        cls.name = name
        _loaded[name] = cls
    return _loaded[name]


def build(name: str, *, preset: str = "paper", device: str = "cpu", dataset: str | None = None,
          **overrides: Any) -> Method:
    """Build method `name` with the preset (the official recipe for `dataset`) and `overrides`."""
    cls = get(name)
    cfg = cls.make_config(preset, overrides, dataset=dataset)
    return cls(cfg, device=device)

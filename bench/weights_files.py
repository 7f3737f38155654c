"""Every pretrained weights file bench can use: what it is for, its name and hash, where bench looks for it.

`bench doctor` reports each one (present, sha256 checked); the README's weights table lists the same facts.
Nothing here downloads or loads a network: it only finds files and checks their hashes. The loaders stay
with their users (bench.metrics.features for the FID Inception, bench.metrics.lpips_diversity for LPIPS,
methods/nets/vgg.py for FSeSim/LSeSim, bench.metrics.segmentation for DRN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class WeightsSpec:
    """The facts of one weights file."""

    key: str
    #: Short name, e.g. "LPIPS AlexNet trunk".
    label: str
    what_for: str
    file_name: str
    #: How the file's sha256 is checked: "prefix" = it starts with the hex digits in the file name (the torch
    #: hub convention), "full" = equals `sha256`, "shipped" = installed inside a package, "user" = no published
    #: hash (shown so the user can pin it).
    check: str
    sha256: str = ""
    how_to_place: str = ""
    #: Candidate paths in lookup order: (label, path or None when that source is not set).
    candidates: Callable[[dict], list[tuple[str, Path | None]]] = field(default=lambda explicit: [], repr=False)

    @property
    def sha256_prefix(self) -> str:
        """The hash digits a torch-hub style file name carries (`vgg16-397923af.pth` -> `397923af`)."""
        stem = Path(self.file_name).stem
        return stem.rsplit("-", 1)[-1] if self.check == "prefix" else ""


@dataclass
class WeightsStatus:
    """Where a weights file was found (or not), and whether its hash is right."""

    spec: WeightsSpec
    path: Path | None
    source: str
    state: str  # ok | unverified | mismatch | missing | error
    sha256: str = ""
    looked: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None and self.state in ("ok", "unverified")


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _given(explicit: dict, key: str) -> Path | None:
    value = explicit.get(key)
    return Path(value).expanduser() if value else None


def _inception_candidates(explicit: dict) -> list[tuple[str, Path | None]]:
    from bench.metrics.features import INCEPTION_ENV, INCEPTION_FILENAME

    return [("--inception-weights", _given(explicit, "inception")), (f"${INCEPTION_ENV}", _env(INCEPTION_ENV)),
            ("torch hub cache", _hub_checkpoints() / INCEPTION_FILENAME)]


def _hub_file(name: str) -> Callable[[dict], list[tuple[str, Path | None]]]:
    return lambda explicit: [("torch hub cache", _hub_checkpoints() / name)]


def _vgg_candidates(explicit: dict) -> list[tuple[str, Path | None]]:
    return [("--set vgg_weights", _given(explicit, "vgg16")), ("torch hub cache", _hub_checkpoints() / VGG16_FILE)]


def _lpips_linear(explicit: dict) -> list[tuple[str, Path | None]]:
    try:
        from bench.metrics.lpips_diversity import linear_weights_file

        return [("lpips package", linear_weights_file("alex", "0.0"))]
    except ImportError:
        return [("lpips package", None)]


def _drn_candidates(explicit: dict) -> list[tuple[str, Path | None]]:
    from bench.metrics.segmentation import SEG_WEIGHTS_ENV

    return [("--seg-weights", _given(explicit, "drn")), (f"${SEG_WEIGHTS_ENV}", _env(SEG_WEIGHTS_ENV))]


INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
VGG16_FILE = "vgg16-397923af.pth"
HUB_HINT = "copy it into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/)"

WEIGHTS: tuple[WeightsSpec, ...] = (
    WeightsSpec("inception", "FID/KID Inception",
                "FID and KID on every dataset (pytorch-fid's InceptionV3, TF inception-2015-12-05)",
                INCEPTION_FILE, "prefix",
                how_to_place=f"--inception-weights FILE, or $BENCH_INCEPTION_WEIGHTS=FILE, or {HUB_HINT}; "
                             "a pool3-only conversion without the fc layer also works (FID/KID exact)",
                candidates=_inception_candidates),
    WeightsSpec("lpips-alex", "LPIPS AlexNet trunk",
                "LPIPS diversity of the multimodal methods (MUNIT, BicycleGAN family)",
                ALEXNET_FILE, "prefix", how_to_place=HUB_HINT, candidates=_hub_file(ALEXNET_FILE)),
    WeightsSpec("lpips-linear", "LPIPS linear layers",
                "LPIPS diversity (the calibrated v0.0 layers over the AlexNet trunk)",
                "lpips/weights/v0.0/alex.pth", "full",
                sha256="18720f55913d0af89042f13faa7e536a6ce1444a0914e6db9461355ece1e8cd5",
                how_to_place="installed with the lpips package (pip install lpips)", candidates=_lpips_linear),
    WeightsSpec("vgg16", "FSeSim/LSeSim VGG16", "the feature loss of FSeSim/LSeSim (torchvision's ImageNet VGG16)",
                VGG16_FILE, "prefix", how_to_place=f"{HUB_HINT}, or --set vgg_weights=PATH",
                candidates=_vgg_candidates),
    WeightsSpec("drn", "Cityscapes DRN-D-22",
                "Cityscapes label->photo mIoU / pixel acc / class acc (DRN-D-22 trained on Cityscapes)",
                "drn_d_22_cityscapes.pth", "user",
                how_to_place="--seg-weights FILE or $BENCH_SEG_WEIGHTS=FILE (from fyu/drn's Cityscapes models; "
                             "no published checksum: pin the sha256 bench doctor prints)",
                candidates=_drn_candidates),
)


def get(key: str) -> WeightsSpec:
    return next(w for w in WEIGHTS if w.key == key)


def _sha256(path: Path) -> str:
    from bench.metrics.protocol import weights_sha256

    return weights_sha256(path)


def locate(spec: WeightsSpec, explicit: dict | None = None) -> WeightsStatus:
    """Find `spec`'s file in lookup order and check its hash. The first source that is set decides: a named
    file that does not exist is `missing` (bench would not fall back to the next source either)."""
    looked = []
    for label, path in spec.candidates(dict(explicit or {})):
        if path is None:
            continue
        looked.append(f"{label}: {path}")
        if not path.is_file():
            if label.startswith(("--", "$")):
                return WeightsStatus(spec, None, label, "missing", looked=looked, detail=f"{path} does not exist")
            continue
        try:
            digest = _sha256(path)
        except OSError as exc:
            return WeightsStatus(spec, path, label, "error", looked=looked, detail=str(exc))
        if spec.check == "prefix":
            ok = digest.startswith(spec.sha256_prefix)
            # A file under another name (e.g. a pool3-only conversion) has no prefix to check.
            if path.name != spec.file_name:
                return WeightsStatus(spec, path, label, "unverified", digest, looked,
                                     f"named differently from {spec.file_name}, so the hash in that name "
                                     "is not checked")
        elif spec.check == "full":
            ok = digest == spec.sha256
        else:
            return WeightsStatus(spec, path, label, "unverified", digest, looked, "no published sha256")
        return WeightsStatus(spec, path, label, "ok" if ok else "mismatch", digest, looked,
                             "" if ok else "sha256 does not match: corrupt or a different file; replace it")
    return WeightsStatus(spec, None, "", "missing", looked=looked, detail=spec.how_to_place)


def locate_all(explicit: dict | None = None) -> list[WeightsStatus]:
    return [locate(spec, explicit) for spec in WEIGHTS]

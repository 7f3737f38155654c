"""Every pretrained weights file bench can use, for people: what it is for, where bench looks, how to place it.

`bench doctor` reports each one (present, sha256 checked) and the README's weights table lists the same files.
Where a file has a loader spec (bench.weights.WeightsSpec: file name, sha256 prefix, flag, environment variable)
that spec is read, not copied: the FID Inception (bench.metrics.features), F/LSeSim's VGG16 (methods/nets/vgg.py),
the Cityscapes DRN (bench.metrics.segmentation). LPIPS's AlexNet trunk is torchvision's file, its linear layers
ship inside the lpips package (bench.metrics.lpips_diversity). Nothing here downloads or loads a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.weights import WeightsSpec as LoaderSpec

HUB_HINT = "copy it into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/)"


def _inception() -> LoaderSpec:
    from bench.metrics.features import INCEPTION

    return INCEPTION


def _vgg16() -> LoaderSpec:
    from methods.nets.vgg import VGG16_WEIGHTS

    return VGG16_WEIGHTS


def _drn() -> LoaderSpec:
    from bench.metrics.segmentation import DRN_WEIGHTS

    return DRN_WEIGHTS


def _alexnet() -> LoaderSpec:
    """LPIPS's AlexNet trunk: torchvision's ImageNet file, whose name carries its sha256 prefix."""
    from bench.metrics.lpips_diversity import trunk_weights_file

    name = trunk_weights_file("alex").name  # alexnet-owt-7be5be79.pth
    return LoaderSpec("torchvision's AlexNet", filename=name, sha256_prefix=Path(name).stem.rsplit("-", 1)[-1])


def _lpips_linear() -> Path:
    from bench.metrics.lpips_diversity import linear_weights_file

    return linear_weights_file("alex", "0.0")


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file as a user meets it."""

    key: str
    #: Short name, e.g. "LPIPS AlexNet trunk".
    label: str
    what_for: str
    #: The file's usual name (the loader spec's cache name where it has one).
    file_name: str
    how_to_place: str
    #: The loader's spec (flag, environment variable, hub cache name, sha256 prefix), or None.
    spec: Callable[[], LoaderSpec] | None = field(default=None, repr=False)
    #: For a file installed inside a package: its path and its full sha256.
    packaged: Callable[[], Path] | None = field(default=None, repr=False)
    sha256: str = ""


WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry("inception", "FID/KID Inception",
                 "FID and KID on every dataset (pytorch-fid's InceptionV3, TF inception-2015-12-05)",
                 "pt_inception-2015-12-05-6726825d.pth",
                 f"--inception-weights FILE, or $BENCH_INCEPTION_WEIGHTS=FILE, or {HUB_HINT}; a pool3-only "
                 "conversion without the fc layer also works (FID/KID exact)", spec=_inception),
    WeightsEntry("lpips-alex", "LPIPS AlexNet trunk",
                 "LPIPS diversity of the multimodal methods (MUNIT, BicycleGAN family)",
                 "alexnet-owt-7be5be79.pth", HUB_HINT, spec=_alexnet),
    WeightsEntry("lpips-linear", "LPIPS linear layers",
                 "LPIPS diversity (the calibrated v0.0 layers over the AlexNet trunk)",
                 "lpips/weights/v0.0/alex.pth", "installed with the lpips package (pip install lpips)",
                 packaged=_lpips_linear, sha256="18720f55913d0af89042f13faa7e536a6ce1444a0914e6db9461355ece1e8cd5"),
    WeightsEntry("vgg16", "FSeSim/LSeSim VGG16", "the feature loss of FSeSim/LSeSim (torchvision's ImageNet VGG16)",
                 "vgg16-397923af.pth", f"{HUB_HINT}, or --set vgg_weights=PATH", spec=_vgg16),
    WeightsEntry("drn", "Cityscapes DRN-D-22",
                 "Cityscapes label->photo mIoU / pixel acc / class acc (DRN-D-22 trained on Cityscapes)",
                 "drn_d_22_cityscapes.pth",
                 "--seg-weights FILE or $BENCH_SEG_WEIGHTS=FILE (from fyu/drn's Cityscapes models; no published "
                 "checksum: pin the sha256 bench doctor prints)", spec=_drn),
)


@dataclass
class WeightsStatus:
    """Where a weights file was found (or not), and whether its hash is right."""

    spec: WeightsEntry
    path: Path | None
    source: str
    state: str  # ok | unverified | mismatch | missing | error
    sha256: str = ""
    looked: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None and self.state in ("ok", "unverified")


def _sha256(path: Path) -> str:
    from bench.weights import sha256

    return sha256(path)


def _check(entry: WeightsEntry, path: Path, source: str, prefix: str, looked: list[str]) -> WeightsStatus:
    try:
        digest = _sha256(path)
    except OSError as exc:
        return WeightsStatus(entry, path, source, "error", looked=looked, detail=str(exc))
    if entry.sha256:
        ok = digest == entry.sha256
    elif prefix:
        ok = digest.startswith(prefix)
    else:
        why = ("no published sha256" if not (entry.spec and entry.spec().sha256_prefix) else
               f"named by {source}, where other files are valid too: the hash is recorded, not checked")
        return WeightsStatus(entry, path, source, "unverified", digest, looked, why)
    return WeightsStatus(entry, path, source, "ok" if ok else "mismatch", digest, looked,
                         "" if ok else "sha256 does not match: corrupt or a different file; replace it")


def locate(entry: WeightsEntry, explicit: dict | None = None) -> WeightsStatus:
    """Find `entry`'s file in the loader's order (flag, environment variable, torch hub cache) and check its hash.
    The first source that is set decides: a named file that does not exist is `missing` (as bench would refuse)."""
    explicit = dict(explicit or {})
    looked: list[str] = []
    if entry.packaged is not None:
        try:
            path = entry.packaged()
        except ImportError as exc:
            return WeightsStatus(entry, None, "", "missing", detail=f"{exc}; {entry.how_to_place}")
        looked.append(f"package: {path}")
        if path.is_file():
            return _check(entry, path, "package", "", looked)
        return WeightsStatus(entry, None, "", "missing", looked=looked, detail=entry.how_to_place)
    spec = entry.spec()
    named = ((explicit.get(entry.key), spec.flag or "path"),
             (os.environ.get(spec.env) if spec.env else None, f"${spec.env}"))
    for value, source in named:
        if value:
            path = Path(value).expanduser()
            looked.append(f"{source}: {path}")
            if not path.is_file():
                return WeightsStatus(entry, None, source, "missing", looked=looked, detail=f"{path} does not exist")
            checked = spec.verify_named or path.name == spec.filename  # the usual file under its usual name
            return _check(entry, path, source, spec.sha256_prefix if checked else "", looked)
    cached = spec.cache_path
    if cached is not None:
        looked.append(f"torch hub cache: {cached}")
        if cached.is_file():
            return _check(entry, cached, "torch hub cache", spec.sha256_prefix, looked)
    return WeightsStatus(entry, None, "", "missing", looked=looked, detail=entry.how_to_place)


def locate_all(explicit: dict | None = None) -> list[WeightsStatus]:
    return [locate(entry, explicit) for entry in WEIGHTS]

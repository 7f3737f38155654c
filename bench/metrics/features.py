"""Feature extractors (a small registry shaped like torch-fidelity's) and the on-disk feature cache.

Pipeline: images -> features (cached) -> statistics -> metric. An extractor takes uint8 (B,3,H,W) and returns
named float features; `inception-v3-fid` is pytorch-fid 0.3.0's `InceptionV3([3])` (2048-d pool3) loaded from
the weights file that `resolve_inception_weights` finds (through bench.weights, the one weights finder, verifier and
loader). Features of a set of images are cached under `<cache>/features/<key>.pt`, key = sha256 of (implementation version, extractor, protocol, weights sha256,
the images' content hashes in order), written atomically and read back with `weights_only=True`.
"""

from __future__ import annotations

import io
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar
from unittest import mock

import numpy as np
import torch
from torch import nn

from bench.errors import CheckpointError, DownloadError, MetricUnavailable, UsageError, closest
from bench.metrics.images import ImageSet, uniform_chunks
from bench.metrics.protocol import IMPL_VERSION, Protocol, cache_root, digest
from bench.weights import WeightsFile, WeightsSpec, find, hub_path, load_state_dict

log = logging.getLogger(__name__)

#: The file name pytorch-fid downloads into the torch hub cache; its sha256 starts with the suffix.
INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_ENV = "BENCH_INCEPTION_WEIGHTS"
FC_KEYS = frozenset({"fc.weight", "fc.bias"})


# ------------------------------------------------------------------------------------------ weights
#: Where the FID Inception weights are looked for (bench.weights finds, verifies and loads them). Files named by
#: flag or variable are not held to the hash: the pool3-only trunk is valid too, and every fingerprint has the sha256.
INCEPTION = WeightsSpec("the FID Inception weights", filename=INCEPTION_FILENAME, sha256_prefix=INCEPTION_SHA256_PREFIX,
                        flag="--inception-weights", env=INCEPTION_ENV, verify_named=False,
                        hint=f"the FID Inception weights, e.g. {INCEPTION_FILENAME} or the pool3-only "
                             "pt_inception-2015-12-05-nofc.pth")


def hub_inception_path() -> Path:
    """Where pytorch-fid's download lands: $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth."""
    return hub_path(INCEPTION_FILENAME)


def download_inception_weights(dst: Path, url: str | None = None, sha256_prefix: str = INCEPTION_SHA256_PREFIX) -> Path:
    """Fetch pytorch-fid's Inception weights to `dst`, verifying the sha256 prefix in the file name."""
    if url is None:
        from pytorch_fid.inception import FID_WEIGHTS_URL

        url = FID_WEIGHTS_URL
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temp file and renames it only once the hash prefix matched.
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=sha256_prefix, progress=False)
    except Exception as exc:  # URLError, HTTPError, RuntimeError (hash mismatch), OSError
        raise DownloadError(f"cannot download the FID Inception weights from {url} ({type(exc).__name__}: {exc})") from None
    return dst


#: Downloads that failed in this process, by target file: the weights are fetched at most once per process
#: (a run evaluates every few epochs, and `--methods all` runs many: offline, each retry cost a timeout and a
#: warning).
_FAILED_DOWNLOADS: dict[str, str] = {}


def _download_once(dst: Path) -> Path:
    """pytorch-fid's download into `dst`, tried at most once per process (a failure is remembered and repeated)."""
    if str(dst) in _FAILED_DOWNLOADS:
        raise DownloadError(_FAILED_DOWNLOADS[str(dst)])
    try:
        return download_inception_weights(dst)
    except DownloadError as exc:
        _FAILED_DOWNLOADS[str(dst)] = str(exc)
        raise


def resolve_inception_weights(explicit: str | Path | None = None, *, download: bool = True,
                              cache_dir: str | Path | None = None) -> WeightsFile:
    """Find the FID Inception weights: argument, then $BENCH_INCEPTION_WEIGHTS, then the torch hub cache, then
    pytorch-fid's download. A named file that does not exist is a UsageError; nothing found is MetricUnavailable."""
    hint = (f"pass --inception-weights FILE, set ${INCEPTION_ENV}, or place {INCEPTION_FILENAME} in "
            f"{hub_inception_path().parent}")
    try:
        found = find(INCEPTION, explicit, cache_dir=cache_dir, download=_download_once if download else None)
    except DownloadError as exc:
        raise MetricUnavailable(f"{exc}; offline? {hint}") from None
    if found is None:
        raise MetricUnavailable(f"no FID Inception weights found; {hint}")
    return found


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a weights file (bench.weights.load_state_dict)."""
    return load_state_dict(path)


# ------------------------------------------------------------------------------------------ extractors
class FeatureExtractorBase(nn.Module):
    """Contract: forward(uint8 (B,3,H,W)) -> {feature name: float (B, D)}; `describe()` for fingerprints."""

    name: ClassVar[str] = ""
    #: Default feature per metric (torch-fidelity's get_default_feature_layer_for_metric).
    default_feature: ClassVar[dict[str, str]] = {}

    @property
    def provides(self) -> tuple[str, ...]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise UsageError(f"feature extractors take uint8 (B,3,H,W) batches, got {x.dtype} {tuple(x.shape)}")


def _fid_inception_builder(state: dict[str, torch.Tensor]) -> Callable[[], nn.Module]:
    """A stand-in for pytorch-fid's `fid_inception_v3()` that loads `state` instead of downloading.

    Follows mseitzer/pytorch-fid@b9c1811:src/pytorch_fid/inception.py fid_inception_v3 (the package's own
    classes build the architecture); the only change is strict=False for the missing 1008-way fc.
    """
    from pytorch_fid import inception as pfi

    def build() -> nn.Module:
        net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pfi.FIDInceptionE_1(1280)
        net.Mixed_7c = pfi.FIDInceptionE_2(2048)
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch
            raise CheckpointError(f"not the FID Inception weights: {str(exc).splitlines()[0]}") from None
        missing = set(result.missing_keys) - FC_KEYS
        if missing or result.unexpected_keys:
            raise CheckpointError(f"not the FID Inception weights: missing {sorted(missing)[:3]}, "
                                  f"unexpected {sorted(result.unexpected_keys)[:3]}")
        return net

    return build


class InceptionFID(FeatureExtractorBase):
    """pytorch-fid's InceptionV3 pool3 (2048-d) under a resize protocol (legacy_pytorch or clean)."""

    name = "inception-v3-fid"
    default_feature = {"fid": "pool3", "kid": "pool3"}

    def __init__(self, weights: WeightsFile, protocol: Protocol) -> None:
        super().__init__()
        from pytorch_fid import inception as pfi

        state = load_state(weights.path)
        self.weights, self.protocol = weights, protocol
        self.has_fc = FC_KEYS <= set(state)
        legacy = protocol.name == "legacy_pytorch"
        # pytorch-fid's InceptionV3 calls fid_inception_v3(), which downloads; build ours in its place so the
        # wrapper (its block split, bilinear resize and [-1,1] scaling) is the package's own code.
        try:
            with mock.patch.object(pfi, "fid_inception_v3", _fid_inception_builder(state)):
                self.net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=legacy,
                                           normalize_input=True)
        except CheckpointError as exc:
            raise CheckpointError(f"{weights.path}: {exc}") from None
        self.eval()

    @property
    def provides(self) -> tuple[str, ...]:
        return ("pool3",)

    def describe(self) -> dict[str, Any]:
        return describe_inception(self.weights, self.protocol)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_input(x)
        device = next(self.net.parameters()).device
        if self.protocol.name == "clean":
            x = clean_resize(x)
        # uint8 -> [0,1] exactly like torchvision's ToTensor in pytorch-fid's loader.
        feats = self.net(x.to(device=device, dtype=torch.float32).div(255))[0]
        return {"pool3": feats.reshape(feats.shape[0], -1)}


def describe_inception(weights: WeightsFile, protocol: Protocol) -> dict[str, Any]:
    """Fingerprint fields of the FID Inception under `protocol` (no need to load the network)."""
    return {"feature_net": "pytorch-fid 0.3.0 InceptionV3 (TF inception-2015-12-05), pool3 2048-d",
            "weights_sha256": weights.sha256, "weights_file": weights.path.name,
            "protocol": protocol.name, "resize": protocol.resize}


def clean_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float (B,3,size,size) in [0,255]: PIL bicubic per channel on float32, clipped.

    Follows GaParmar/clean-fid@e88c4d6:cleanfid/resize.py make_resizer("PIL", False, "bicubic", (299, 299)).
    """
    from PIL import Image

    out = np.empty((x.shape[0], 3, size, size), dtype=np.float32)
    arr = x.cpu().numpy()
    for i in range(arr.shape[0]):
        for c in range(3):
            img = Image.fromarray(arr[i, c].astype(np.float32), mode="F").resize((size, size), resample=Image.BICUBIC)
            out[i, c] = np.asarray(img).clip(0, 255)
    return torch.from_numpy(out)


#: name -> factory(weights, protocol) -> FeatureExtractorBase. One place lists every extractor.
FEATURE_EXTRACTORS: dict[str, Callable[..., FeatureExtractorBase]] = {}


def register_feature_extractor(name: str, factory: Callable[..., FeatureExtractorBase]) -> None:
    """Add an extractor under a new name (no spaces or slashes)."""
    if not isinstance(name, str) or not name or any(c in name for c in " /\\"):
        raise ValueError(f"invalid feature extractor name {name!r}")
    if name in FEATURE_EXTRACTORS:
        raise ValueError(f"feature extractor {name!r} is already registered ({FEATURE_EXTRACTORS[name]!r})")
    FEATURE_EXTRACTORS[name] = factory


register_feature_extractor(InceptionFID.name, InceptionFID)


@lru_cache(maxsize=2)
def _cached_extractor(name: str, weights: WeightsFile, protocol: Protocol, device: str) -> FeatureExtractorBase:
    # Evaluations during training call this every few epochs: load the 100 MB network once per process.
    return FEATURE_EXTRACTORS[name](weights, protocol).to(device).eval()


def get_extractor(name: str, weights: WeightsFile, protocol: Protocol, device: str = "cpu") -> FeatureExtractorBase:
    """A ready (eval-mode, on `device`) extractor, memoised per process."""
    if name not in FEATURE_EXTRACTORS:
        raise UsageError(f"unknown feature extractor {name!r}{closest(name, FEATURE_EXTRACTORS)}")
    return _cached_extractor(name, weights, protocol, str(device))


# ------------------------------------------------------------------------------------------ extraction + cache
def extract_features(extractor: FeatureExtractorBase, images: ImageSet, *, batch_size: int = 50,
                     num_workers: int = 0) -> dict[str, torch.Tensor]:
    """Run `extractor` over every image in order -> {feature name: float32 (N, D) on the CPU}."""
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in extractor.provides}
    with torch.inference_mode():
        for batch in images.batches(batch_size, num_workers):
            for chunk in uniform_chunks(batch):
                for k, v in extractor(chunk).items():
                    outs[k].append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


class FeatureCache:
    """Features of image sets on disk, keyed by content + protocol; `root=None` disables it."""

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root) / "features"

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / f"{key}.pt"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            feats = blob["features"]
            if not all(isinstance(v, torch.Tensor) for v in feats.values()):
                raise ValueError("not a dict of tensors")
        except Exception as exc:  # the cache is derived data: a bad entry is recomputed, not fatal
            log.warning("ignoring unreadable feature cache %s (%s); recomputing", path, exc)
            return None
        return feats

    def save(self, key: str, feats: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        path = self.path(key)
        if path is None:
            return
        from bench.checkpoint import atomic_write_bytes

        buf = io.BytesIO()
        torch.save({"features": {k: v.contiguous() for k, v in feats.items()}, "meta": meta}, buf)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            log.warning("cannot write the feature cache %s (%s); continuing without it", path, exc)


def feature_key(extractor_name: str, protocol: Protocol, weights: WeightsFile, images: ImageSet) -> str:
    """The cache key of a set's features: implementation, extractor, protocol, weights, image content."""
    return digest({"impl": IMPL_VERSION, "extractor": extractor_name, "protocol": protocol.name,
                   "weights_sha256": weights.sha256, "images": images.content_hash,
                   "convert_rgb": images.options.convert_rgb})


def features_for(images: ImageSet, *, extractor_name: str, protocol: Protocol, weights: WeightsFile,
                 cache: FeatureCache, use_cache: bool, device: str = "cpu", batch_size: int = 50,
                 num_workers: int = 0, needs: tuple[str, ...] = ("pool3",)) -> dict[str, torch.Tensor]:
    """Features of `images`, from the cache when the same content was seen under the same protocol."""
    key = feature_key(extractor_name, protocol, weights, images) if use_cache else None
    if key is not None:
        hit = cache.load(key)
        if hit is not None and all(k in hit and hit[k].shape[0] == len(images) for k in needs):
            log.debug("%s features from cache %s", images.label, cache.path(key))
            return hit
    extractor = get_extractor(extractor_name, weights, protocol, device)
    feats = extract_features(extractor, images, batch_size=batch_size, num_workers=num_workers)
    if key is not None:
        cache.save(key, feats, {"source": images.source, "n": len(images), "protocol": protocol.name,
                                "weights_sha256": weights.sha256, "impl": IMPL_VERSION})
    return feats


def default_cache(cache_dir: str | Path | None) -> FeatureCache:
    return FeatureCache(cache_root(cache_dir))

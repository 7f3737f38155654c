"""Frozen VGG16 feature extractor (ImageNet weights from torchvision's cache) for perceptual-style losses.

Keys follow F-LSeSim's `VGG16` wrapper (`relu3_1.10.weight`: slice name + torchvision `features` index),
so its layer indices (relu1_1 = 0 ... relu5_3 = 12, `--attn_layers 4,7,9`) mean the same here.
The weights are never downloaded here: they are read from an explicit path or from
`$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth` (where torchvision caches them) and verified by the
sha256 prefix in their file name (bench.weights verifies and loads them).

Official quirk: the slice F-LSeSim calls `relu4_1` holds torchvision indices 16-17 (pool, conv4_1); the ReLU at
18 opens `relu4_2`. Because torchvision's ReLUs are in-place, running `relu4_2` rectifies the stored `relu4_1`
tensor, so the official loss does see ReLU(conv4_1). We keep the slices (and their keys) and apply that ReLU
explicitly to the `relu4_1` output (the leading ReLU of `relu4_2` is then a no-op), without in-place aliasing.
Follows lyndonzheng/F-LSeSim@6ca7883:models/losses.py VGG16.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from bench.errors import CheckpointError, ConfigError
from bench.metrics.protocol import sha256_file  # noqa: F401  (re-exported: a file's plain sha256)
from bench.weights import WeightsSpec, hub_path, load_state_dict, verify

log = logging.getLogger(__name__)

VGG16_FILE = "vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"
#: Seed of the stand-in random VGG16 (used only when the ImageNet weights are absent and allowed to be).
RANDOM_SEED = 0
LAYER_NAMES = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
               "relu4_1", "relu4_2", "relu4_3", "relu5_1", "relu5_2", "relu5_3")
# Each named slice holds these torchvision `vgg16().features` indices (conv, relu, pool, ...).
_SLICES = ((0, 2), (2, 4), (4, 7), (7, 9), (9, 12), (12, 14), (14, 16), (16, 18), (18, 21), (21, 23),
           (23, 26), (26, 28), (28, 30))
_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_POOL_BEFORE = {2, 4, 7, 10}  # slices that start with a max-pool (torchvision indices 4, 9, 16, 23)


def _torchvision_features() -> list[nn.Module]:
    """The 30 modules of torchvision's vgg16().features (the final pool excluded), same indices."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, c in enumerate(_CHANNELS):
        if i in _POOL_BEFORE:
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
        c_in = c
    return layers


class VGG16Features(nn.Module):
    """VGG16 conv trunk cut into the 13 relu slices; `forward(x, layers)` returns those relu outputs.

    Input: ImageNet-normalised RGB (see `imagenet_normalize`). Parameters are frozen (requires_grad False)
    and the module stays in eval mode; gradients still flow to the input.
    """

    def __init__(self) -> None:
        super().__init__()
        # Building must not consume the global RNG (it would shift every later seeded init of the run).
        with torch.random.fork_rng(devices=[]):
            features = _torchvision_features()
        for name, (lo, hi) in zip(LAYER_NAMES, _SLICES):
            block = nn.Sequential()
            for j in range(lo, hi):
                block.add_module(str(j), features[j])
            self.add_module(name, block)
        self.reset_random()
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def reset_random(self, seed: int = RANDOM_SEED) -> None:
        """torchvision's random VGG init (kaiming-normal fan_out, zero bias) from a private generator.

        A fixed seed makes "the random VGG16" one well-defined network, the same in every run and after a
        resume, so checkpoints need not carry it.
        """
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                    nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> "VGG16Features":
        # Frozen feature extractor: always eval (it has no dropout/BN, but keep the promise explicit).
        return super().train(False)

    @staticmethod
    def channels(layer: int) -> int:
        """Channels of relu slice `layer` (0 = relu1_1 ... 12 = relu5_3)."""
        return _CHANNELS[layer]

    def forward(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the requested relu slices (indices into LAYER_NAMES), in increasing index order."""
        wanted, last = set(layers), max(layers)
        feats = []
        for i, name in enumerate(LAYER_NAMES[: last + 1]):
            x = self.get_submodule(name)(x)
            if name == "relu4_1":
                x = torch.relu(x)  # what the official in-place ReLU of relu4_2 leaves in this tensor
            if i in wanted:
                feats.append(x)
        return feats


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1] -> ImageNet mean/std normalised (F-LSeSim's `Normalization`)."""
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x + 1) * 0.5 - mean) / std


#: torchvision's ImageNet VGG16 (bench.weights finds, verifies and loads it; nothing is downloaded here).
VGG16_WEIGHTS = WeightsSpec(f"torchvision's {VGG16_FILE}", filename=VGG16_FILE, sha256_prefix=VGG16_SHA256_PREFIX,
                            flag="vgg_weights")


def torchvision_cache_path() -> Path:
    """Where torchvision caches the ImageNet VGG16 weights: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth."""
    return hub_path(VGG16_FILE)


def from_torchvision_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision vgg16 state dict (`features.<i>.*`, classifier ignored) to VGG16Features keys."""
    owner = {j: name for name, (lo, hi) in zip(LAYER_NAMES, _SLICES) for j in range(lo, hi)}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and int(parts[1]) in owner:
            out[f"{owner[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    return out


def load_vgg16_weights(net: VGG16Features, path: Path, sha256_prefix: str = VGG16_SHA256_PREFIX) -> str:
    """Verify and load torchvision ImageNet VGG16 weights into `net`; returns a description with the sha256.

    Raises CheckpointError naming the file when the hash or the keys do not match.
    """
    path = Path(path)
    digest = verify(path, sha256_prefix, VGG16_WEIGHTS.what)
    mapped = from_torchvision_state(load_state_dict(path))
    try:
        net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not a VGG16 state dict ({exc})") from exc
    log.info("loaded VGG16 ImageNet weights from %s (sha256 %s)", path, digest)
    return f"torchvision:{path.stem} sha256:{digest}"


#: Record of the stand-in VGG16: torchvision's random init drawn from a fixed seed (RANDOM_SEED).
RANDOM_VGG = "random"
#: MUNIT's `vgg16.weight` (its Vgg16 module: conv1_1 ... conv5_3, from the Lua/caffe vgg16.t7).
MUNIT_VGG_KEYS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                  "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")


def load_munit_vgg16_weights(net: VGG16Features, path: Path) -> str:
    """Load MUNIT's converted `vgg16.weight` (keys conv1_1.weight ...) into `net`; returns the record.

    Its 13 convs map in order onto the relu slices. The weights are caffe's (BGR, 0-255 inputs minus the mean):
    feed them `caffe_preprocess`, not `imagenet_normalize`. Follows NVlabs/MUNIT@a82e222:networks.py Vgg16.
    """
    path = Path(path)
    state = load_state_dict(path)
    mapped = {}
    for i, name in enumerate(LAYER_NAMES):
        conv = next(k for k, m in net.get_submodule(name).named_children() if isinstance(m, nn.Conv2d))
        for part in ("weight", "bias"):
            key = f"{MUNIT_VGG_KEYS[i]}.{part}"
            if key not in state:
                raise CheckpointError(f"{path}: no {key}; not MUNIT's vgg16.weight (expected keys "
                                      f"{MUNIT_VGG_KEYS[0]}.weight ... {MUNIT_VGG_KEYS[-1]}.bias)")
            mapped[f"{name}.{conv}.{part}"] = state[key]
    try:
        net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not a VGG16 state dict ({exc})") from exc
    digest = sha256_file(path)
    log.info("loaded MUNIT's VGG16 weights from %s (sha256 %s)", path, digest)
    return f"munit:{path.name} sha256:{digest}"


def is_munit_vgg16_file(path: Path) -> bool:
    """Whether a weights file is MUNIT's converted vgg16.weight (else torchvision's vgg16-*.pth)."""
    try:
        return "conv1_1.weight" in load_state_dict(path)
    except CheckpointError:
        return False


def caffe_preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> BGR in [0, 255] minus caffe's mean (MUNIT's vgg_preprocess)."""
    mean = torch.tensor([103.939, 116.779, 123.680], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x.flip(1) + 1) * 127.5 - mean


def resolve_vgg16(net: VGG16Features, explicit: str, allow_random: bool, who: str,
                  munit_format: bool = False) -> str:
    """Find, verify and load VGG16 weights into `net`: the file `explicit`, else torchvision's cache file;
    random (fixed seed) only with `allow_random`. Returns the record ("torchvision:... sha256:...", "munit:...",
    or "random"). Nothing is downloaded. `munit_format` also accepts MUNIT's converted vgg16.weight."""
    path = Path(explicit).expanduser() if explicit else torchvision_cache_path()
    if path.is_file():
        if munit_format and is_munit_vgg16_file(path):
            return load_munit_vgg16_weights(net, path)
        return load_vgg16_weights(net, path)
    if explicit:
        raise ConfigError(f"vgg_weights={explicit}: no such file; point it at torchvision's {VGG16_FILE}")
    if allow_random:
        log.warning("%s: VGG16 ImageNet weights not found at %s; training with a RANDOM VGG16 "
                    "(allow_random_vgg=true): results are not comparable to the paper", who, path)
        return RANDOM_VGG
    raise ConfigError(
        f"{who} needs torchvision's ImageNet VGG16 weights at {path} (not found; "
        f"nothing is downloaded). Put {VGG16_FILE} there (torchvision caches it when online: "
        f"python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"), "
        "or --set vgg_weights=PATH, or --set allow_random_vgg=true to train with a random VGG16")

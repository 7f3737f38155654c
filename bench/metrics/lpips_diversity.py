"""LPIPS diversity of a multimodal translator (BicycleGAN protocol), with the `lpips` package.

For each input, K samples (random latent codes) are translated; the LPIPS distance of the K-1 consecutive
pairs (1-2, 2-3, ...) is averaged over all inputs: 100 inputs x 19 pairs of 20 samples in BicycleGAN,
LPIPS version 0.0 with the AlexNet trunk (BicycleGAN README: `compute_dists_pair.py -v 0.0`; v0.1 scales
inputs and gives ~2.4x larger numbers, BicycleGAN#83). Higher = more diverse.
`std` is the standard deviation of the individual pair distances (ddof=1); `details.sem` its standard error.

The trunks need torchvision's ImageNet weights, which the package downloads at construction time. They are
looked up in the torch hub cache first; when absent the metric is unavailable with the file name and where
to put it. `pnet_rand=True` uses a randomly initialised trunk (seeded): only for exercising the code path.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np
import torch

from bench.errors import UsageError
from bench.metrics.protocol import fingerprint, sha256_file, weights_sha256
from bench.metrics.result import MetricResult

log = logging.getLogger(__name__)

NAME = "lpips_diversity"
NETS = ("alex", "vgg", "squeeze")
VERSIONS = ("0.0", "0.1")

#: lpips trunk -> (torchvision constructor, its weights enum)
_TV_WEIGHTS = {"alex": ("alexnet", "AlexNet_Weights"), "vgg": ("vgg16", "VGG16_Weights"),
               "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights")}

Outputs = Union[torch.Tensor, Callable[[int], torch.Tensor]]


def trunk_weights_file(net: str) -> Path:
    """Where torchvision keeps the ImageNet weights that lpips' `net` trunk loads."""
    from torchvision import models

    from bench.weights import hub_path

    weights = getattr(models, _TV_WEIGHTS[net][1]).IMAGENET1K_V1
    return hub_path(Path(weights.url).name)


def linear_weights_file(net: str, version: str) -> Path:
    """The calibrated linear layers shipped inside the lpips package."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"


@lru_cache(maxsize=2)
def _model(net: str, version: str, pnet_rand: bool, seed: int, device: str) -> torch.nn.Module:
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # lpips 0.1.4 passes torchvision's deprecated `pretrained=` flag; the warning is noise for users.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(seed)  # only the random trunk (pnet_rand) uses it; keeps that path deterministic
        model = lpips.LPIPS(net=net, version=version, pnet_rand=pnet_rand, verbose=False)
    return model.to(device).eval()


def _as_unit_range(x: torch.Tensor, i: int) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1
    if not x.is_floating_point():
        raise UsageError(f"lpips_diversity: outputs of input {i} must be float in [-1,1] or uint8, got {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise UsageError(f"lpips_diversity: outputs of input {i} span [{lo:.3g}, {hi:.3g}]; give images in [-1,1]")
    return x.float()


def lpips_diversity(outputs: Outputs, *, n_inputs: int | None = None, net: str = "alex", version: str = "0.0",
                    pnet_rand: bool = False, device: str = "cpu", seed: int = 0,
                    context: Mapping[str, Any] | None = None) -> MetricResult:
    """Mean LPIPS between consecutive samples of each input.

    Args:
        outputs: a tensor (N_inputs, K_samples, 3, H, W) in [-1, 1] (or uint8), or a callable i -> (K, 3, H, W).
        n_inputs: how many inputs to use (required with a callable; default all of the tensor's).
        net, version: LPIPS trunk and version (BicycleGAN: alex, 0.0).
        pnet_rand: random trunk instead of ImageNet weights (tests only; the number is meaningless).
    """
    if net not in NETS or version not in VERSIONS:
        raise UsageError(f"lpips_diversity: net must be one of {NETS} and version one of {VERSIONS}, "
                         f"got {net!r}, {version!r}")
    if isinstance(outputs, torch.Tensor):
        if outputs.ndim != 5 or outputs.shape[2] != 3:
            raise UsageError(f"lpips_diversity: expected (N_inputs, K_samples, 3, H, W), got {tuple(outputs.shape)}")
        total = outputs.shape[0] if n_inputs is None else min(n_inputs, outputs.shape[0])
        get = outputs.__getitem__
    elif callable(outputs):
        if n_inputs is None:
            raise UsageError("lpips_diversity: give n_inputs with a callable")
        total, get = n_inputs, outputs
    else:
        raise UsageError(f"lpips_diversity: outputs must be a tensor or a callable, got {type(outputs).__name__}")
    trunk = "random (pnet_rand: code-path check only, not comparable)"
    fp_fields: dict[str, Any] = {"net": net, "version": version, "pairs": "consecutive samples per input",
                                 "linear_weights_sha256": sha256_file(linear_weights_file(net, version))}
    if not pnet_rand:
        path = trunk_weights_file(net)
        if not path.is_file():
            return MetricResult.missing(
                NAME, f"LPIPS {net} trunk needs torchvision's ImageNet weights {path.name}, not in {path.parent}; "
                      f"copy it there (fetched by torchvision.models.{_TV_WEIGHTS[net][0]}(weights='DEFAULT') on a machine "
                      "with internet)",
                fingerprint=fingerprint(NAME, context=context, **fp_fields))
        trunk = f"torchvision ImageNet {path.name} sha256 {weights_sha256(path)}"
    fp_fields["trunk"] = trunk
    if total < 1:
        raise UsageError("lpips_diversity: needs at least one input")
    model = _model(net, version, pnet_rand, seed, str(device))
    dists, k_samples = [], None
    with torch.inference_mode():
        for i in range(total):
            x = _as_unit_range(torch.as_tensor(get(i)), i)
            if x.ndim != 4 or x.shape[0] < 2 or x.shape[1] != 3:
                raise UsageError(f"lpips_diversity: input {i} gave {tuple(x.shape)}; need (K>=2, 3, H, W) samples")
            k_samples = x.shape[0]
            x = x.to(device)
            dists.append(model(x[:-1], x[1:]).flatten().double().cpu())
    d = torch.cat(dists).numpy()
    std = float(d.std(ddof=1)) if d.size > 1 else 0.0
    fp = fingerprint(NAME, seed=seed if pnet_rand else None, context=context, n_inputs=total,
                     n_samples=k_samples, n_pairs=int(d.size), **fp_fields)
    return MetricResult(NAME, float(d.mean()), std, {"n_pairs": float(d.size), "sem": float(std / np.sqrt(d.size))},
                        fingerprint=fp)

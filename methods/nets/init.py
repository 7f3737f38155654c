"""Weight initialisation and norm-layer factories shared by every method."""

from __future__ import annotations

import functools

from torch import nn
from torch.nn import init


def norm_layer(kind: str):
    """Factory for 'instance' (affine=False, no running stats), 'batch' (affine, running stats) or 'none'.

    Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py get_norm_layer.
    """
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: instance, batch, none")


def uses_bias(kind: str) -> bool:
    """Convs before a norm carry a bias only with InstanceNorm (affine=False), as the official code decides.

    Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py (`use_bias = norm_layer.func ==
    nn.InstanceNorm2d`): BatchNorm has its own shift, and with norm 'none' the official test is False too.
    """
    return kind == "instance"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise Conv/Linear weights (bias 0) and BatchNorm (weight N(1, gain), bias 0) in place.

    Follows contrastive-unpaired-translation@b3ac297:models/networks.py init_weights.
    'none' keeps PyTorch's defaults (NICE-GAN).
    """
    if init_type == "none":
        return net

    def init_func(m: nn.Module) -> None:
        classname = m.__class__.__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init_type {init_type!r}")
            if getattr(m, "bias", None) is not None:
                init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in classname and m.weight is not None:
            init.normal_(m.weight, 1.0, gain)
            init.constant_(m.bias, 0.0)

    net.apply(init_func)
    return net

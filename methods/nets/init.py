"""Weight initialisation and norm-layer factories shared by every method."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import init


def contiguous_grad(t: torch.Tensor) -> torch.Tensor:
    """`t`, whose gradient is made contiguous before it reaches t's backward (see InstanceNorm2d)."""
    if t.requires_grad:
        t.register_hook(lambda g: g.contiguous())
    return t


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d whose backward always receives a contiguous gradient.

    Works around a silent PyTorch CPU error (found on torch 2.14.1): at batch size 1, the instance-norm
    backward returns wrong input/weight gradients when the incoming gradient is channels_last-strided,
    e.g. `y = F.instance_norm(x); torch.autograd.grad(y, x, v.contiguous(memory_format=torch.channels_last))`
    differs from the same call with `v` contiguous (and from finite differences). PatchNCE's
    `permute(0, 2, 3, 1)` sampling of encoder features sends exactly such gradients into the ResNet
    blocks' last instance norm, so CUT-family training at the papers' batch size 1 got wrong NCE
    gradients. Same module, state-dict keys and forward values; only the gradient's layout changes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return contiguous_grad(super().forward(x))


def norm_layer(kind: str):
    """Factory for 'instance' (affine=False, no running stats), 'batch' (affine, running stats) or 'none'.

    Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py get_norm_layer.
    """
    if kind == "instance":
        return functools.partial(InstanceNorm2d, affine=False, track_running_stats=False)
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

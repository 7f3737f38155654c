"""BicycleGAN's image encoders E(B) -> z: E_ResNet (netE=resnet_*) and E_CNN (netE=conv_*, `E_NLayers`).

Both reduce the image by `num_downs` stride-2 stages to an 8×8 map, average it to 1×1 (AvgPool 8, so
the input must be 8·2**num_downs px: 256 px for the official 5), and read z through linear heads:
`fc` gives μ and, when `vae_like`, `fcVar` gives log σ². Without `vae_like` E is deterministic (cAE-GAN
and the latent regressor of cLR-GAN only use μ). Keys match the official code.
Follows junyanz/BicycleGAN@40b9d52:models/networks.py E_ResNet, BasicBlock, E_NLayers.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.nets.init import norm_layer

POOL = 8


def _norm(norm: str):
    # The official define_E passes norm_layer=None for 'none' and then leaves the layer out.
    return None if norm == "none" else norm_layer(norm)


def _lrelu() -> nn.Module:
    # Not in-place: with norm='none' the official in-place LeakyReLU would overwrite the block input
    # that the shortcut still reads. Same parameters and keys.
    return nn.LeakyReLU(0.2)


class BasicBlock(nn.Module):
    """Pre-activation residual block that halves the resolution: conv path + (avgpool, 1×1 conv) shortcut."""

    def __init__(self, inplanes: int, outplanes: int, norm: str = "instance") -> None:
        super().__init__()
        Norm = _norm(norm)
        layers: list[nn.Module] = [Norm(inplanes)] if Norm else []
        layers += [_lrelu(), nn.Conv2d(inplanes, inplanes, 3, stride=1, padding=1)]
        layers += [Norm(inplanes)] if Norm else []
        layers += [_lrelu(), nn.Sequential(nn.Conv2d(inplanes, outplanes, 3, stride=1, padding=1), nn.AvgPool2d(2, 2))]
        self.conv = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(inplanes, outplanes, 1, stride=1, padding=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class _Heads(nn.Module):
    """Shared forward: conv trunk -> flatten -> μ (and log σ² when vae_like)."""

    vae_like: bool

    def _check(self, x: torch.Tensor, h: torch.Tensor) -> None:
        if h.shape[2:] != (1, 1):
            from bench.errors import UsageError

            side = POOL * 2**self.num_downs
            raise UsageError(f"encoder input is {tuple(x.shape[2:])} px but this E (num_downs_E={self.num_downs}) "
                             f"needs {side}x{side}; resize the images to the training crop_size")

    def forward(self, x: torch.Tensor):
        h = self.conv(x)
        self._check(x, h)
        flat = h.flatten(1)
        mu = self.fc(flat)
        if self.vae_like:
            return mu, self.fcVar(flat)
        return mu


class EResNet(_Heads):
    """E_ResNet: conv4 s2, (num_downs-1) BasicBlocks (nef·[1,2,3,4,4…]), LReLU, AvgPool(8), linear heads.

    2,590,032 params at nef=64, num_downs=5 (resnet_256), nz=8, vae_like.
    """

    def __init__(self, input_nc: int = 3, nz: int = 8, nef: int = 64, num_downs: int = 5, norm: str = "instance",
                 vae_like: bool = True) -> None:
        super().__init__()
        self.vae_like, self.num_downs = vae_like, num_downs
        max_mult = 4
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, 4, stride=2, padding=1)]
        for n in range(1, num_downs):
            layers.append(BasicBlock(nef * min(max_mult, n), nef * min(max_mult, n + 1), norm))
        out_nc = nef * min(max_mult, num_downs)
        layers += [_lrelu(), nn.AvgPool2d(POOL)]
        # Registration order as in the official class (heads first), so state_dict key order matches too.
        self.fc = nn.Sequential(nn.Linear(out_nc, nz))
        if vae_like:
            self.fcVar = nn.Sequential(nn.Linear(out_nc, nz))
        self.conv = nn.Sequential(*layers)


class ECNN(_Heads):
    """E_CNN (E_NLayers): num_downs × [conv4 s2, norm, LReLU] (nef·[1,2,4,4…]), AvgPool(8), linear heads.

    2,760,656 params at nef=64, num_downs=5 (conv_256), nz=8, vae_like. The first conv has no norm.
    """

    def __init__(self, input_nc: int = 3, nz: int = 8, nef: int = 64, num_downs: int = 5, norm: str = "instance",
                 vae_like: bool = True) -> None:
        super().__init__()
        self.vae_like, self.num_downs = vae_like, num_downs
        Norm = _norm(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, 4, stride=2, padding=1), _lrelu()]
        mult = 1
        for n in range(1, num_downs):
            prev, mult = mult, min(2**n, 4)
            layers.append(nn.Conv2d(nef * prev, nef * mult, 4, stride=2, padding=1))
            layers += [Norm(nef * mult)] if Norm else []
            layers.append(_lrelu())
        layers.append(nn.AvgPool2d(POOL))
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(nef * mult, nz))
        if vae_like:
            self.fcVar = nn.Sequential(nn.Linear(nef * mult, nz))


ENCODERS = {"E_ResNet": EResNet, "E_CNN": ECNN}


def define_E(kind: str, input_nc: int = 3, nz: int = 8, nef: int = 64, num_downs: int = 5, norm: str = "instance",
             vae_like: bool = True) -> nn.Module:
    """'E_ResNet' (official netE=resnet_256 at num_downs 5) or 'E_CNN' (netE=conv_256)."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; valid: {', '.join(ENCODERS)}")
    return ENCODERS[kind](input_nc, nz, nef, num_downs, norm, vae_like)


def encoder_input_size(num_downs: int) -> int:
    """Image side the encoders need so their final AvgPool(8) yields 1×1."""
    return POOL * 2**num_downs

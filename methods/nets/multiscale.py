"""BicycleGAN's multi-scale PatchGAN (`D_NLayersMulti`, netD=basic_256_multi / basic_128_multi).

Scale i is a PatchGAN of width round(ndf / 2**i) on the input average-pooled i times
(AvgPool 3, stride 2, pad 1, count_include_pad=False); the forward returns the list of patch maps
(a single tensor when num_D=1) and the GAN loss sums over scales. Unlike the CycleGAN-repo PatchGAN
every conv carries a bias, also with InstanceNorm. At 256 px: 30×30 and 14×14 maps, 3,458,978 params
at ndf=64 on 3 channels. Keys: `model_0.*`, `model_1.*` (num_D > 1) or `model.*` (num_D = 1).
Follows junyanz/BicycleGAN@40b9d52:models/networks.py D_NLayersMulti, define_D.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.nets.init import norm_layer

#: Official netD names -> n_layers. (The official single-scale 'basic_256'/'basic_128' crash in its
#: define_D, which passes an unknown nl_layer argument; num_Ds=1 gives a single scale instead.)
KINDS = {"basic_256_multi": 3, "basic_128_multi": 2}


def patchgan_layers(input_nc: int, ndf: int, n_layers: int, norm: str) -> list[nn.Module]:
    """The 70×70 PatchGAN stack with a bias on every conv (BicycleGAN's get_layers)."""
    Norm = None if norm == "none" else norm_layer(norm)
    seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        seq.append(nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1))
        seq += [Norm(ndf * mult)] if Norm else []
        seq.append(nn.LeakyReLU(0.2, True))
    prev, mult = mult, min(2**n_layers, 8)
    seq.append(nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1))
    seq += [Norm(ndf * mult)] if Norm else []
    seq += [nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
    return seq


class DNLayersMulti(nn.Module):
    """`num_D` PatchGANs on successively halved inputs; returns a list of logit maps (tensor if num_D=1)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 num_D: int = 2) -> None:
        super().__init__()
        self.num_D = num_D
        if num_D == 1:
            self.model = nn.Sequential(*patchgan_layers(input_nc, ndf, n_layers, norm))
            return
        self.model_0 = nn.Sequential(*patchgan_layers(input_nc, ndf, n_layers, norm))
        self.down = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        for i in range(1, num_D):
            self.add_module(f"model_{i}", nn.Sequential(*patchgan_layers(input_nc, int(round(ndf / 2**i)),
                                                                         n_layers, norm)))

    def scales(self) -> list[nn.Module]:
        """The per-scale PatchGANs, finest first (registration order model_0, model_1, ...)."""
        return [m for name, m in self.named_children() if name.startswith("model_")]

    def forward(self, x: torch.Tensor):
        if self.num_D == 1:
            return self.model(x)
        out = []
        for i, scale in enumerate(self.scales()):
            out.append(scale(x))
            if i != self.num_D - 1:
                x = self.down(x)
        return out


def patch_map_size(size: int, n_layers: int) -> int:
    """Side of a PatchGAN's output for a `size`-px input (n_layers stride-2 convs, then two k4 s1 p1)."""
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


def smallest_patch_map(kind: str, size: int, num_Ds: int = 2) -> int:
    """Side of the smallest output map of discriminator `kind` on a `size`-px input (< 1: does not fit)."""
    n_layers = KINDS[kind]
    sides = []
    for _ in range(num_Ds):
        sides.append(patch_map_size(size, n_layers))
        size = (size + 2 - 3) // 2 + 1
    return min(sides)


def define_D_multi(kind: str, input_nc: int = 3, ndf: int = 64, norm: str = "instance", num_Ds: int = 2) -> nn.Module:
    """BicycleGAN's define_D: 'basic_256_multi' (3 stride-2 layers) or 'basic_128_multi' (2), num_Ds scales."""
    if kind not in KINDS:
        raise ValueError(f"unknown discriminator {kind!r}; valid: {', '.join(KINDS)}")
    return DNLayersMulti(input_nc, ndf, KINDS[kind], norm, num_Ds)

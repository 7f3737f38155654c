"""PatchGAN discriminators: the 70×70 N-layer net (optionally anti-aliased) and the 1×1 PixelGAN.

Keys match the official code (`model.<i>...`). Follows pytorch-CycleGAN-and-pix2pix@00d5574 and
contrastive-unpaired-translation@b3ac297:models/networks.py NLayerDiscriminator.
"""

from __future__ import annotations

from torch import nn

from methods.nets.antialias import Downsample
from methods.nets.init import norm_layer, uses_bias


class NLayerDiscriminator(nn.Module):
    """Conv4 stacks: `n_layers` stride-2 stages then two stride-1 convs; 30×30 logits for 256² input.

    antialias=True replaces each stride-2 conv by conv stride 1 -> (norm) -> LReLU -> blur-downsample.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 antialias: bool = False) -> None:
        super().__init__()
        Norm, bias = norm_layer(norm), uses_bias(norm)
        kw, padw = 4, 1
        if antialias:
            seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=1, padding=padw), nn.LeakyReLU(0.2, True),
                                    Downsample(ndf)]
        else:
            seq = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            if antialias:
                seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=bias), Norm(ndf * mult),
                        nn.LeakyReLU(0.2, True), Downsample(ndf * mult)]
            else:
                seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=bias), Norm(ndf * mult),
                        nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=bias), Norm(ndf * mult),
                nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1×1 PatchGAN (pixelGAN)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        Norm, bias = norm_layer(norm), uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1, stride=1, padding=0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, stride=1, padding=0, bias=bias), Norm(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, stride=1, padding=0, bias=bias))

    def forward(self, x):
        return self.net(x)


def define_D(kind: str, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
             antialias: bool = False) -> nn.Module:
    """'basic' (70×70), 'n_layers' (custom depth) or 'pixel'."""
    if kind == "basic":
        return NLayerDiscriminator(input_nc, ndf, 3, norm, antialias)
    if kind == "n_layers":
        return NLayerDiscriminator(input_nc, ndf, n_layers, norm, antialias)
    if kind == "pixel":
        return PixelDiscriminator(input_nc, ndf, norm)
    raise ValueError(f"unknown discriminator {kind!r}; valid: basic, n_layers, pixel")

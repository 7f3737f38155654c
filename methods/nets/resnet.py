"""ResNet generator (Johnson et al.) in its CycleGAN and anti-aliased CUT flavours.

State-dict keys match the official code (`model.<i>...`, `model.<i>.conv_block.<j>...`), so released
CycleGAN, CUT, DCLGAN, QS-Attn, EnCo and F-LSeSim generators load. `forward(x, layers)` also returns the
intermediate features at the given `model` indices (CUT's `nce_layers`).
Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py ResnetGenerator and
contrastive-unpaired-translation@b3ac297:models/networks.py ResnetGenerator.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from methods.nets.antialias import Downsample, Upsample
from methods.nets.init import norm_layer, uses_bias


class ResnetBlock(nn.Module):
    """pad-conv3-norm-ReLU-[dropout]-pad-conv3-norm, added to the input (no ReLU after the sum)."""

    def __init__(self, dim: int, norm: str = "instance", use_dropout: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        Norm, bias = norm_layer(norm), uses_bias(norm)

        def pad():
            if padding == "reflect":
                return [nn.ReflectionPad2d(1)], 0
            if padding == "replicate":
                return [nn.ReplicationPad2d(1)], 0
            return [], 1

        layers: list[nn.Module] = []
        p, conv_pad = pad()
        layers += p + [nn.Conv2d(dim, dim, 3, padding=conv_pad, bias=bias), Norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        p, conv_pad = pad()
        layers += p + [nn.Conv2d(dim, dim, 3, padding=conv_pad, bias=bias), Norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, 2 down, `n_blocks` residual blocks, 2 up, c7s1-3, tanh.

    Args:
        antialias: CUT flavour (conv s1 + blur-downsample, blur-upsample + conv s1); False = CycleGAN's
            strided conv / transposed conv. Both have the same parameters (11,378,179 at ngf=64, 9 blocks).
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", use_dropout: bool = False, antialias: bool = False,
                 antialias_up: bool | None = None, padding: str = "reflect") -> None:
        super().__init__()
        antialias_up = antialias if antialias_up is None else antialias_up
        Norm, bias = norm_layer(norm), uses_bias(norm)
        model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=bias),
                                  Norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            if antialias:
                model += [nn.Conv2d(c, 2 * c, 3, stride=1, padding=1, bias=bias), Norm(2 * c), nn.ReLU(True),
                          Downsample(2 * c)]
            else:
                model += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), Norm(2 * c), nn.ReLU(True)]
        for _ in range(n_blocks):
            model.append(ResnetBlock(ngf * 4, norm, use_dropout, padding))
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            if antialias_up:
                model += [Upsample(c), nn.Conv2d(c, c // 2, 3, stride=1, padding=1, bias=bias), Norm(c // 2),
                          nn.ReLU(True)]
            else:
                model += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                          Norm(c // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor, layers: Sequence[int] = (), encode_only: bool = False):
        """Output image; with `layers`, also the features after those `model` indices.

        encode_only=True stops after the last requested layer and returns only the features.
        """
        if not layers:
            return self.model(x)
        wanted = set(layers)
        last = max(layers)
        feats = []
        h = x
        for i, layer in enumerate(self.model):
            h = layer(h)
            if i in wanted:
                feats.append(h)
            if encode_only and i == last:
                return feats
        return h, feats

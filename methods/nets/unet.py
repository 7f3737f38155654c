"""U-Net generators: pix2pix's (CycleGAN repo) and BicycleGAN's two z-injection variants.

Three official flavours with different state-dict layouts, all kept key-for-key:

- `UnetGenerator` (pix2pix): skip = cat([x, inner(x)]); convs carry a bias only with InstanceNorm.
  Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py UnetGenerator.
- `UnetGeneratorAddInput` (BicycleGAN `where_add=input`): z tiled and concatenated to the image only;
  skip = cat([inner(x), x]); every conv has a bias.
- `UnetGeneratorAddAll` (BicycleGAN `where_add=all`): z tiled and concatenated to the input of every
  down-conv; modules `down` / `submodule` / `up` instead of one Sequential.
  Both follow junyanz/BicycleGAN@40b9d52:models/networks.py G_Unet_add_input / G_Unet_add_all.

Depth: `num_downs` stride-2 stages (8 = unet_256, 7 = unet_128), so the crop must be a multiple of
2**num_downs. Channels from the innermost level out: ngf*8, (num_downs-5) × ngf*8 with dropout,
ngf*4, ngf*2, ngf, then the outermost level. For num_downs >= 6 this is exactly the official layout of
all three; the official G_Unet_add_all silently builds 6 levels when asked for 5, we build 5 (only the
32-px smoke preset uses 5).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from methods.nets.init import norm_layer

Flavour = Literal["cyclegan", "bicyclegan"]
MIN_DOWNS = 5


def unet_levels(num_downs: int, ngf: int) -> list[tuple[int, int, bool]]:
    """(outer_nc, inner_nc, dropout_allowed) of the non-outermost levels, innermost first."""
    if num_downs < MIN_DOWNS:
        raise ValueError(f"num_downs must be >= {MIN_DOWNS}, got {num_downs}")
    levels = [(ngf * 8, ngf * 8, False)]
    levels += [(ngf * 8, ngf * 8, True)] * (num_downs - 5)
    levels += [(ngf * 4, ngf * 8, False), (ngf * 2, ngf * 4, False), (ngf, ngf * 2, False)]
    return levels


def _norm(norm: str, flavour: Flavour):
    """Norm factory; BicycleGAN drops the layer for norm='none', the CycleGAN repo inserts an Identity."""
    if norm == "none" and flavour == "bicyclegan":
        return None
    return norm_layer(norm)


def tile_z(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Replicate a (N, nz) code spatially to (N, nz, H, W) of `like`."""
    return z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), like.size(2), like.size(3))


class UnetSkipBlock(nn.Module):
    """One U-Net level as a single Sequential `model` (pix2pix and BicycleGAN add_input).

    Args:
        input_nc: channels entering the down-conv (outer_nc unless outermost).
        outer_nc: channels the up-conv returns; inner_nc: channels of the down-conv output.
        flavour: "cyclegan" (bias only with InstanceNorm, skip first in the concat) or "bicyclegan"
            (always a bias, skip last in the concat, no layer for norm='none').
    """

    def __init__(self, input_nc: int, outer_nc: int, inner_nc: int, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch",
                 use_dropout: bool = False, flavour: Flavour = "cyclegan") -> None:
        super().__init__()
        self.outermost = outermost
        self.skip_first = flavour == "cyclegan"
        Norm = _norm(norm, flavour)
        # The CycleGAN repo tests `norm_layer == InstanceNorm2d`, so norm='none' also drops the bias there.
        bias = norm == "instance" if flavour == "cyclegan" else True
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [downconv, submodule, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)]
            layers += [Norm(outer_nc)] if Norm else []
        else:
            layers = [nn.LeakyReLU(0.2, True), downconv] + ([Norm(inner_nc)] if Norm else [])
            layers += [submodule, nn.ReLU(True),
                       nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)]
            layers += [Norm(outer_nc)] if Norm else []
            layers += [nn.Dropout(0.5)] if use_dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        y = self.model(x)
        return torch.cat([x, y] if self.skip_first else [y, x], 1)


def _build_sequential_unet(input_nc: int, output_nc: int, num_downs: int, ngf: int, norm: str,
                           use_dropout: bool, flavour: Flavour) -> UnetSkipBlock:
    block = None
    for i, (outer, inner, drop) in enumerate(unet_levels(num_downs, ngf)):
        block = UnetSkipBlock(outer, outer, inner, block, innermost=i == 0, norm=norm,
                              use_dropout=use_dropout and drop, flavour=flavour)
    return UnetSkipBlock(input_nc, output_nc, ngf, block, outermost=True, norm=norm, flavour=flavour)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net (unet_256: num_downs=8; 54,413,955 params with BatchNorm at ngf=64)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", use_dropout: bool = False) -> None:
        super().__init__()
        self.model = _build_sequential_unet(input_nc, output_nc, num_downs, ngf, norm, use_dropout, "cyclegan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetGeneratorAddInput(nn.Module):
    """BicycleGAN's G_Unet_add_input: z concatenated to the image input only (nz=0: no z)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nz: int = 8, num_downs: int = 8, ngf: int = 64,
                 norm: str = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        self.nz = nz
        self.model = _build_sequential_unet(input_nc + nz, output_nc, num_downs, ngf, norm, use_dropout,
                                            "bicyclegan")

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.nz > 0:
            x = torch.cat([x, tile_z(z, x)], 1)
        return self.model(x)


class UnetBlockWithZ(nn.Module):
    """One BicycleGAN add_all level: z is tiled and concatenated to this level's input before its down-conv."""

    def __init__(self, input_nc: int, outer_nc: int, inner_nc: int, nz: int = 0,
                 submodule: UnetBlockWithZ | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        self.outermost, self.innermost, self.nz = outermost, innermost, nz
        Norm = _norm(norm, "bicyclegan")
        downconv = nn.Conv2d(input_nc + nz, inner_nc, 4, stride=2, padding=1)
        if outermost:
            down = [downconv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            down = [nn.LeakyReLU(0.2, True), downconv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1)]
            up += [Norm(outer_nc)] if Norm else []
        else:
            down = [nn.LeakyReLU(0.2, True), downconv] + ([Norm(inner_nc)] if Norm else [])
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)]
            up += [Norm(outer_nc)] if Norm else []
            up += [nn.Dropout(0.5)] if use_dropout else []
        self.down = nn.Sequential(*down)
        self.submodule = submodule
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x_and_z = torch.cat([x, tile_z(z, x)], 1) if self.nz > 0 else x
        if self.outermost:
            return self.up(self.submodule(self.down(x_and_z), z))
        if self.innermost:
            return torch.cat([self.up(self.down(x_and_z)), x], 1)
        return torch.cat([self.up(self.submodule(self.down(x_and_z), z)), x], 1)


class UnetGeneratorAddAll(nn.Module):
    """BicycleGAN's G_Unet_add_all (54,794,627 params at unet_256, nz=8, ngf=64)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nz: int = 8, num_downs: int = 8, ngf: int = 64,
                 norm: str = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        self.nz = nz
        block = None
        for i, (outer, inner, drop) in enumerate(unet_levels(num_downs, ngf)):
            block = UnetBlockWithZ(outer, outer, inner, nz, block, innermost=i == 0, norm=norm,
                                   use_dropout=use_dropout and drop)
        self.model = UnetBlockWithZ(input_nc, output_nc, ngf, nz, block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, z)


def define_G_z(where_add: str, input_nc: int = 3, output_nc: int = 3, nz: int = 8, num_downs: int = 8,
               ngf: int = 64, norm: str = "instance", use_dropout: bool = False) -> nn.Module:
    """BicycleGAN's U-Net with z injected at the input ('input') or at every down level ('all')."""
    if nz == 0:  # the official define_G also falls back to add_input without a code
        where_add = "input"
    if where_add == "input":
        return UnetGeneratorAddInput(input_nc, output_nc, nz, num_downs, ngf, norm, use_dropout)
    if where_add == "all":
        return UnetGeneratorAddAll(input_nc, output_nc, nz, num_downs, ngf, norm, use_dropout)
    raise ValueError(f"unknown where_add {where_add!r}; valid: input, all")

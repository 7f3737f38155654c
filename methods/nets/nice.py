"""NICE-GAN networks: the discriminator whose first layers are the encoder (with a CAM), and the
AdaILN decoder ("generator") that maps the encoder's code back to an image.

State-dict keys match the official code (`model.1.weight_orig`, `fc.weight_orig`, `lamda`, `Dis0_0...`,
`conv0...`; `UpBlock0...`, `FC...`, `gamma`, `beta`, `UpBlock1_<i>...`, `UpBlock2...`), so released
checkpoints (`params_*.pt` with keys gen2B/gen2A/disA/disB) load.
Follows alpc91/NICE-GAN-pytorch@1b114f1:networks.py (Discriminator, ResnetGenerator, adaILN, ILN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

# Every conv of the discriminator is a reflection-padded 4×4 conv (pad 1).
_K, _P = 4, 1


def _instance_layer_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance-normalised and layer-normalised `x`; unbiased variances like the official code."""
    in_mean, in_var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True)
    ln_mean, ln_var = x.mean(dim=(1, 2, 3), keepdim=True), x.var(dim=(1, 2, 3), keepdim=True)
    return (x - in_mean) / torch.sqrt(in_var + eps), (x - ln_mean) / torch.sqrt(ln_var + eps)


class _RhoMix(nn.Module):
    """Shared part of ILN/AdaILN: a per-channel mix ρ·IN + (1-ρ)·LN.

    The official NICE-GAN keeps ρ in [0, 1] with a softmax over two raw logits per channel (`rho`, shape
    (1, C, 2)) instead of U-GAT-IT's clipping after each step: the mix weights can never leave [0, 1] and
    always sum to 1, whatever the optimiser does to the raw parameter.
    """

    def __init__(self, num_features: int, rho_init: tuple[float, float], eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.rho = nn.Parameter(torch.empty(1, num_features, 2))
        with torch.no_grad():
            self.rho[:, :, 0].fill_(rho_init[0])
            self.rho[:, :, 1].fill_(rho_init[1])

    def rho_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective (ρ_IN, ρ_LN), each (1, C, 1, 1) in [0, 1] and summing to 1."""
        rho = torch.softmax(self.rho, dim=2)
        return rho[:, :, 0, None, None], rho[:, :, 1, None, None]

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        out_in, out_ln = _instance_layer_stats(x, self.eps)
        rho_in, rho_ln = self.rho_weights()
        return rho_in * out_in + rho_ln * out_ln


class AdaILN(_RhoMix):
    """Adaptive Instance-Layer Norm: the mix scaled and shifted by per-sample γ, β (B, C) from the FC."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, (3.2, 1.0), eps)  # starts close to IN

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return self.mix(x) * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(_RhoMix):
    """Instance-Layer Norm with learned affine γ, β (used in the up-sampling path)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, (1.0, 3.2), eps)  # starts close to LN
        self.gamma = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x) * self.gamma + self.beta


class ResnetAdaILNBlock(nn.Module):
    """pad-conv3-AdaILN-ReLU-pad-conv3-AdaILN, added to the input."""

    def __init__(self, dim: int, use_bias: bool = False) -> None:
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, 3, bias=use_bias)
        self.norm1 = AdaILN(dim)
        self.relu1 = nn.ReLU(True)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(dim, dim, 3, bias=use_bias)
        self.norm2 = AdaILN(dim)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        out = self.norm2(self.conv2(self.pad2(out)), gamma, beta)
        return out + x


class NICEGenerator(nn.Module):
    """Decoder from the encoder's code (B, 2·ngf, S/4, S/4) to an image (B, 3, S, S).

    γ, β of every AdaILN come from an MLP on the code: `light=False` flattens the whole 256-channel map
    into one Linear (S²/16·4·ngf → 4·ngf: 268,435,456 weights at S=256, ngf=64, so the input size is fixed);
    `light=True` global-average-pools it first (any input size).
    """

    def __init__(self, output_nc: int = 3, ngf: int = 64, n_blocks: int = 6, img_size: int = 256,
                 light: bool = False) -> None:
        super().__init__()
        self.light, self.img_size = light, img_size
        dim = ngf * 4  # two down-samplings happened in the encoder
        self.relu = nn.ReLU(True)
        fc_in = dim if light else (img_size // 4) * (img_size // 4) * dim
        self.gamma = nn.Linear(dim, dim, bias=False)
        self.beta = nn.Linear(dim, dim, bias=False)
        # Official attribute names UpBlock1_1..n (not a ModuleList) so checkpoints keep their keys.
        self.res_blocks: list[ResnetAdaILNBlock] = []
        for i in range(n_blocks):
            block = ResnetAdaILNBlock(dim, use_bias=False)
            self.add_module(f"UpBlock1_{i + 1}", block)
            self.res_blocks.append(block)

        up: list[nn.Module] = []
        for i in range(2):
            c = dim // 2**i
            # Sub-pixel up-sampling: conv3 (C -> C/2) then conv1 (C/2 -> 2C) + PixelShuffle(2).
            up += [nn.ReflectionPad2d(1), nn.Conv2d(c, c // 2, 3, bias=False), ILN(c // 2), nn.ReLU(True),
                   nn.Conv2d(c // 2, c // 2 * 4, 1, bias=True), nn.PixelShuffle(2), ILN(c // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=False), nn.Tanh()]

        self.FC = nn.Sequential(nn.Linear(fc_in, dim, bias=False), nn.ReLU(True),
                                nn.Linear(dim, dim, bias=False), nn.ReLU(True))
        self.UpBlock0 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim // 2, dim, 3, bias=True), ILN(dim),
                                      nn.ReLU(True))
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.UpBlock0(z)
        if self.light:
            h = self.FC(F.adaptive_avg_pool2d(x, 1).flatten(1))
        else:
            if x.shape[2] != self.img_size // 4 or x.shape[3] != self.img_size // 4:
                raise ValueError(f"the full NICE-GAN generator was built for {self.img_size}px images "
                                 f"(code {self.img_size // 4}×{self.img_size // 4}); got a "
                                 f"{x.shape[2]}×{x.shape[3]} code")
            h = self.FC(x.flatten(1))
        gamma, beta = self.gamma(h), self.beta(h)
        for block in self.res_blocks:
            x = block(x, gamma, beta)
        return self.UpBlock2(x)


def _sn_conv(cin: int, cout: int, stride: int, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, _K, stride=stride, padding=0, bias=bias))


def _down(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(_P), _sn_conv(cin, cout, stride), nn.LeakyReLU(0.2, True)]


class NICEDiscriminator(nn.Module):
    """Encoder (2 stride-2 SN convs + CAM) shared by a local (70 px RF) and a global (286 px RF) head.

    `forward(x)` returns (local logits, global logits, CAM logit, heatmap, z) like the official code; the
    generator of the other domain decodes `z`. `n_layers` (official `n_dis`, ≥ 6) sets the depth.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 7) -> None:
        super().__init__()
        if n_layers < 6:
            raise ValueError(f"n_layers (n_dis) must be >= 6, got {n_layers}")
        enc_dim = ndf * 2
        self.fc = spectral_norm(nn.Linear(enc_dim * 2, 1, bias=False))
        self.conv1x1 = nn.Conv2d(enc_dim * 2, enc_dim, 1, stride=1, bias=True)
        self.leaky_relu = nn.LeakyReLU(0.2, True)
        self.lamda = nn.Parameter(torch.zeros(1))

        dis0_0: list[nn.Module] = []
        for i in range(2, n_layers - 4):
            dis0_0 += _down(ndf * 2 ** (i - 1), ndf * 2**i, 2)
        mult = 2 ** (n_layers - 5)
        dis0_1 = _down(ndf * mult, ndf * mult * 2, 1)
        self.conv0 = _sn_conv(ndf * mult * 2, 1, 1, bias=False)

        dis1_0: list[nn.Module] = []
        for i in range(n_layers - 4, n_layers - 2):
            dis1_0 += _down(ndf * 2 ** (i - 1), ndf * 2**i, 2)
        mult = 2 ** (n_layers - 3)
        dis1_1 = _down(ndf * mult, ndf * mult * 2, 1)
        self.conv1 = _sn_conv(ndf * mult * 2, 1, 1, bias=False)
        self.pad = nn.ReflectionPad2d(_P)

        self.model = nn.Sequential(*_down(input_nc, ndf, 2), *_down(ndf, enc_dim, 2))
        self.Dis0_0 = nn.Sequential(*dis0_0)
        self.Dis0_1 = nn.Sequential(*dis0_1)
        self.Dis1_0 = nn.Sequential(*dis1_0)
        self.Dis1_1 = nn.Sequential(*dis1_1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, CAM logit, heatmap) of images `x`; z is what the generators decode."""
        x = self.model(x)
        x0 = x
        gap = F.adaptive_avg_pool2d(x, 1)
        gmp = F.adaptive_max_pool2d(x, 1)
        cam_logit = self.fc(torch.cat([gap, gmp], 1).flatten(1))
        # The CAM re-weights channels with the *un-normalised* fc weight: with spectral norm the module's
        # only parameter is `weight_orig`. Follows NICE-GAN-pytorch@1b114f1:networks.py
        # (`list(self.fc.parameters())[0]`).
        weight = self.fc.weight_orig
        x = self.conv1x1(torch.cat([x, x], 1) * weight[:, :, None, None])
        x = self.leaky_relu(self.lamda * x + x0)
        heatmap = x.sum(dim=1, keepdim=True)
        return x, cam_logit, heatmap

    def classify(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(local, global) patch logits of an encoded batch."""
        x0 = self.Dis0_0(z)
        x1 = self.Dis1_0(x0)
        out0 = self.conv0(self.pad(self.Dis0_1(x0)))
        out1 = self.conv1(self.pad(self.Dis1_1(x1)))
        return out0, out1

    def forward(self, x: torch.Tensor):
        z, cam_logit, heatmap = self.encode(x)
        out0, out1 = self.classify(z)
        return out0, out1, cam_logit, heatmap, z

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder part (convs before the CAM, CAM fc, 1×1 conv and λ)."""
        return [*self.model.parameters(), *self.fc.parameters(), *self.conv1x1.parameters(), self.lamda]


def min_image_size(n_layers: int = 7) -> int:
    """Smallest multiple-of-4 image size whose global head still yields ≥ 1 logit (96 for n_dis=7)."""

    def fits(size: int) -> bool:
        def conv(n: int, stride: int) -> int:
            # Reflection padding needs n > pad; 4×4 conv after pad 1.
            return (n + 2 * _P - _K) // stride + 1 if n > _P else 0

        e = conv(conv(size, 2), 2)
        for _ in range(n_layers - 6):
            e = conv(e, 2)
        local = conv(conv(e, 1), 1)
        g = conv(conv(e, 2), 2)
        glob = conv(conv(g, 1), 1)
        return min(local, glob) >= 1

    size = 4
    while not fits(size):
        size += 4
    return size

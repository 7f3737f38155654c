"""MUNIT networks: content and style encoders, the AdaIN decoder with its style MLP, and the multi-scale
discriminator.

Module names and nesting match the official code (`enc_style.model.<i>.conv`, `enc_content.model.3.model.<j>
.model.<k>.conv`, `dec.model...`, `mlp.model.<i>.fc`, `cnns.<s>.<i>.conv`), so released `gen_*.pt`/`dis_*.pt`
checkpoints ({'a': ..., 'b': ...}) load into gen_a/gen_b/dis_a/dis_b.
Follows NVlabs/MUNIT@a82e222:networks.py (AdaINGen, MsImageDis, Conv2dBlock, LinearBlock, LayerNorm,
AdaptiveInstanceNorm2d).

Unlike the official code, AdaIN parameters are passed to the decoder's forward instead of being assigned
to module attributes before each call: no tensors of one batch are left on the modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.nets.init import InstanceNorm2d, contiguous_grad

NORMS = ("none", "in", "ln", "bn", "adain")
ACTIVATIONS = ("relu", "lrelu", "prelu", "selu", "tanh", "none")
PADS = ("reflect", "replicate", "zero")


def _activation(kind: str) -> nn.Module | None:
    table = {"relu": lambda: nn.ReLU(True), "lrelu": lambda: nn.LeakyReLU(0.2, True), "prelu": nn.PReLU,
             "selu": lambda: nn.SELU(True), "tanh": nn.Tanh, "none": lambda: None}
    if kind not in table:
        raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")
    return table[kind]()


class LayerNorm(nn.Module):
    """MUNIT's layer norm: per sample over (C, H, W), divided by (unbiased std + eps); γ ~ U[0, 1)."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps, self.affine = num_features, eps, affine
        if affine:
            self.gamma = nn.Parameter(torch.empty(num_features).uniform_())
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        shape = [-1] + [1] * (x.dim() - 1)
        x = (x - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + self.eps)
        if self.affine:
            shape = [1, -1] + [1] * (x.dim() - 2)
            x = x * self.gamma.view(shape) + self.beta.view(shape)
        return x


class AdaptiveInstanceNorm2d(nn.Module):
    """Instance norm whose per-sample scale and shift come from the style MLP (passed to forward).

    The official module keeps two dummy buffers (never updated); they are kept so checkpoint keys match.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        # Same as the official batch_norm over a (1, B·C, H, W) view in training mode (biased variance).
        return contiguous_grad(F.instance_norm(x, eps=self.eps)) * std[:, :, None, None] + mean[:, :, None, None]


class Conv2dBlock(nn.Module):
    """pad -> conv -> [norm] -> [activation]; attribute names as in the official block."""

    def __init__(self, input_dim: int, output_dim: int, kernel_size: int, stride: int, padding: int = 0,
                 norm: str = "none", activation: str = "relu", pad_type: str = "zero") -> None:
        super().__init__()
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}
        if pad_type not in pads:
            raise ValueError(f"unknown pad_type {pad_type!r}; valid: {', '.join(PADS)}")
        self.pad = pads[pad_type](padding)
        norms = {"bn": lambda: nn.BatchNorm2d(output_dim), "in": lambda: InstanceNorm2d(output_dim),
                 "ln": lambda: LayerNorm(output_dim), "adain": lambda: AdaptiveInstanceNorm2d(output_dim),
                 "none": lambda: None}
        if norm not in norms:
            raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        self.norm = norms[norm]()
        self.activation = _activation(activation)
        self.conv = nn.Conv2d(input_dim, output_dim, kernel_size, stride, bias=True)

    def forward(self, x: torch.Tensor, adain: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if isinstance(self.norm, AdaptiveInstanceNorm2d):
            if adain is None:
                raise ValueError("an AdaIN block needs (mean, std) from the style MLP")
            x = self.norm(x, *adain)
        elif self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class LinearBlock(nn.Module):
    """fc -> [activation] (the MLP never uses a norm in MUNIT's configs)."""

    def __init__(self, input_dim: int, output_dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim, bias=True)
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return x if self.activation is None else self.activation(x)


class ResBlock(nn.Module):
    """Two 3×3 Conv2dBlocks (the second without activation) plus the input."""

    def __init__(self, dim: int, norm: str = "in", activation: str = "relu", pad_type: str = "zero") -> None:
        super().__init__()
        self.model = nn.Sequential(Conv2dBlock(dim, dim, 3, 1, 1, norm, activation, pad_type),
                                   Conv2dBlock(dim, dim, 3, 1, 1, norm, "none", pad_type))

    def forward(self, x: torch.Tensor, adain: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        a0, a1 = adain if adain is not None else (None, None)
        return self.model[1](self.model[0](x, a0), a1) + x


class ResBlocks(nn.Module):
    def __init__(self, num_blocks: int, dim: int, norm: str = "in", activation: str = "relu",
                 pad_type: str = "zero") -> None:
        super().__init__()
        self.model = nn.Sequential(*[ResBlock(dim, norm, activation, pad_type) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor, adain: list | None = None) -> torch.Tensor:
        for i, block in enumerate(self.model):
            x = block(x, None if adain is None else adain[2 * i: 2 * i + 2])
        return x


class StyleEncoder(nn.Module):
    """c7s1 then 2 doubling and n-2 plain stride-2 convs (no norm), global average pool, 1×1 conv to style_dim."""

    def __init__(self, n_downsample: int, input_dim: int, dim: int, style_dim: int, norm: str, activ: str,
                 pad_type: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm, activ, pad_type)]
        for _ in range(2):
            layers.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, norm, activ, pad_type))
            dim *= 2
        for _ in range(n_downsample - 2):
            layers.append(Conv2dBlock(dim, dim, 4, 2, 1, norm, activ, pad_type))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1, 1, 0)]
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ContentEncoder(nn.Module):
    """c7s1, `n_downsample` doubling stride-2 convs, `n_res` residual blocks, all instance-normed."""

    def __init__(self, n_downsample: int, n_res: int, input_dim: int, dim: int, norm: str, activ: str,
                 pad_type: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm, activ, pad_type)]
        for _ in range(n_downsample):
            layers.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, norm, activ, pad_type))
            dim *= 2
        layers.append(ResBlocks(n_res, dim, norm, activ, pad_type))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """AdaIN residual blocks, then (nearest ×2 upsample, 5×5 conv, LN) per level, then c7s1 + tanh."""

    def __init__(self, n_upsample: int, n_res: int, dim: int, output_dim: int, activ: str = "relu",
                 pad_type: str = "zero") -> None:
        super().__init__()
        layers: list[nn.Module] = [ResBlocks(n_res, dim, "adain", activ, pad_type)]
        for _ in range(n_upsample):
            layers += [nn.Upsample(scale_factor=2), Conv2dBlock(dim, dim // 2, 5, 1, 2, "ln", activ, pad_type)]
            dim //= 2
        layers.append(Conv2dBlock(dim, output_dim, 7, 1, 3, "none", "tanh", pad_type))
        self.model = nn.Sequential(*layers)

    def adain_layers(self) -> list[AdaptiveInstanceNorm2d]:
        """The AdaIN norms in module order: the order the MLP's output is sliced in."""
        return [m for m in self.modules() if isinstance(m, AdaptiveInstanceNorm2d)]

    def forward(self, x: torch.Tensor, adain_params: torch.Tensor) -> torch.Tensor:
        # Each AdaIN layer takes 2·C values: the first C are the shift ("mean"), the next C the scale ("std").
        chunks, offset = [], 0
        for m in self.adain_layers():
            c = m.num_features
            chunks.append((adain_params[:, offset:offset + c], adain_params[:, offset + c:offset + 2 * c]))
            offset += 2 * c
        x = self.model[0](x, chunks)
        for layer in self.model[1:]:
            x = layer(x)
        return x


class MLP(nn.Module):
    """Style code -> AdaIN parameters: `n_blk` linear layers, activations between them."""

    def __init__(self, input_dim: int, output_dim: int, dim: int, n_blk: int, activ: str = "relu") -> None:
        super().__init__()
        layers = [LinearBlock(input_dim, dim, activ)]
        layers += [LinearBlock(dim, dim, activ) for _ in range(n_blk - 2)]
        layers.append(LinearBlock(dim, output_dim, "none"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1))


class AdaINGen(nn.Module):
    """One domain's auto-encoder: content encoder, style encoder (4 down-samplings), MLP, AdaIN decoder."""

    def __init__(self, input_dim: int = 3, dim: int = 64, style_dim: int = 8, n_downsample: int = 2, n_res: int = 4,
                 activ: str = "relu", pad_type: str = "reflect", mlp_dim: int = 256) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.enc_style = StyleEncoder(4, input_dim, dim, style_dim, "none", activ, pad_type)
        self.enc_content = ContentEncoder(n_downsample, n_res, input_dim, dim, "in", activ, pad_type)
        self.dec = Decoder(n_downsample, n_res, self.enc_content.output_dim, input_dim, activ, pad_type)
        n_adain = sum(2 * m.num_features for m in self.dec.adain_layers())
        self.mlp = MLP(style_dim, n_adain, mlp_dim, 3, activ)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content code, style code (B, style_dim, 1, 1))."""
        return self.enc_content(images), self.enc_style(images)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Image from a content code and a style code (B, style_dim[, 1, 1])."""
        return self.dec(content, self.mlp(style))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(images))


class MsImageDis(nn.Module):
    """`num_scales` PatchGANs on the image average-pooled by 2 between scales; returns a list of logit maps."""

    def __init__(self, input_dim: int = 3, dim: int = 64, n_layer: int = 4, norm: str = "none",
                 activ: str = "lrelu", num_scales: int = 3, pad_type: str = "reflect") -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.cnns = nn.ModuleList()
        for _ in range(num_scales):
            d = dim
            layers: list[nn.Module] = [Conv2dBlock(input_dim, d, 4, 2, 1, "none", activ, pad_type)]
            for _ in range(n_layer - 1):
                layers.append(Conv2dBlock(d, d * 2, 4, 2, 1, norm, activ, pad_type))
                d *= 2
            layers.append(nn.Conv2d(d, 1, 1, 1, 0))
            self.cnns.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for model in self.cnns:
            outputs.append(model(x))
            x = self.downsample(x)
        return outputs


def min_image_size(n_layer: int = 4, num_scales: int = 3) -> int:
    """Smallest power-of-two image the coarsest scale of MsImageDis accepts with reflection padding (64)."""
    size = 2
    while True:
        coarsest = size
        for _ in range(num_scales - 1):
            coarsest = (coarsest + 1) // 2
        n, ok = coarsest, True
        for _ in range(n_layer):
            if n < 2:  # a 1-pixel map cannot be reflection-padded
                ok = False
                break
            n = (n + 2 - 4) // 2 + 1
        if ok and n >= 1:
            return size
        size *= 2

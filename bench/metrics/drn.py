"""DRN-D segmentation network (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017).

Our implementation of fyu/drn's `DRNSeg` with the D-architecture trunks, built so that the public Cityscapes
checkpoints (e.g. `drn_d_22_cityscapes.pth`) load key for key: `base.<i>` are the trunk's layer0..layer8,
`seg` the 1x1 classifier, `up` the fixed bilinear 8x transposed convolution.
Follows fyu/drn@d75db2e:drn.py (DRN, BasicBlock, Bottleneck, _make_layer, _make_conv_layers) and
segment.py (DRNSeg, fill_up_weights) for architecture and key names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: arch -> (block, layers); channels are (16, 32, 64, 128, 256, 512, 512, 512) for all D models.
ARCHS = {"drn_d_22": ("basic", (1, 1, 2, 2, 2, 2, 1, 1)), "drn_d_38": ("basic", (1, 1, 3, 4, 6, 3, 1, 1)),
         "drn_d_54": ("bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)), "drn_d_105": ("bottleneck", (1, 1, 3, 4, 23, 3, 1, 1))}
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: tuple[int, int] = (1, 1), residual: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: tuple[int, int] = (1, 1), residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation[1], dilation=dilation[1], bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _Trunk:
    """Builds the D-architecture layers while tracking the running channel count (DRN's `inplanes`)."""

    def __init__(self, block: type[nn.Module]) -> None:
        self.block, self.cin = block, CHANNELS[0]

    def conv_layers(self, channels: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        mods: list[nn.Module] = []
        for i in range(convs):
            mods += [nn.Conv2d(self.cin, channels, 3, stride=stride if i == 0 else 1, padding=dilation,
                               dilation=dilation, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            self.cin = channels
        return nn.Sequential(*mods)

    def res_layers(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1,
                   new_level: bool = True) -> nn.Sequential:
        out = planes * self.block.expansion
        downsample = None
        if stride != 1 or self.cin != out:
            downsample = nn.Sequential(nn.Conv2d(self.cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        layers = [self.block(self.cin, planes, stride, downsample, dilation=first)]
        self.cin = out
        layers += [self.block(self.cin, planes, dilation=(dilation, dilation)) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def drn_trunk(arch: str) -> nn.Sequential:
    """layer0..layer8 of a DRN-D model as one Sequential (DRNSeg's `base`), classifier head dropped."""
    kind, n = ARCHS[arch]
    t = _Trunk(BasicBlock if kind == "basic" else Bottleneck)
    c = CHANNELS
    layers = [nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)),
              t.conv_layers(c[0], n[0]), t.conv_layers(c[1], n[1], stride=2),
              t.res_layers(c[2], n[2], stride=2), t.res_layers(c[3], n[3], stride=2),
              t.res_layers(c[4], n[4], dilation=2, new_level=False)]
    if n[5]:
        layers.append(t.res_layers(c[5], n[5], dilation=4, new_level=False))
    if n[6]:
        layers.append(t.conv_layers(c[6], n[6], dilation=2))
    if n[7]:
        layers.append(t.conv_layers(c[7], n[7], dilation=1))
    return nn.Sequential(*layers)


def bilinear_up_weights(up: nn.ConvTranspose2d) -> None:
    """Fill a depthwise transposed conv with the bilinear kernel (fyu/drn segment.py fill_up_weights)."""
    w = up.weight.data
    k = w.shape[2]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = torch.tensor([1 - abs(i / f - c) for i in range(k)])
    w.copy_(torch.outer(r, r).expand_as(w))


class DRNSeg(nn.Module):
    """DRN-D trunk + 1x1 classifier + fixed 8x bilinear upsampling; forward returns class scores (B,C,H,W)."""

    def __init__(self, arch: str = "drn_d_22", classes: int = 19) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown DRN arch {arch!r}; one of {sorted(ARCHS)}")
        self.base = drn_trunk(arch)
        out_dim = CHANNELS[-1]
        self.seg = nn.Conv2d(out_dim, classes, 1, bias=True)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, output_padding=0, groups=classes,
                                     bias=False)
        self.up.weight.requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DRN's initialisation (He-normal convs, unit BN) and the bilinear `up` kernel."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
        bilinear_up_weights(self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.seg(self.base(x)))

"""Anti-aliased down/up-sampling (Zhang 2019, "Making CNNs shift-invariant again"), as CUT uses them.

The blur filters are persistent buffers named `filt`, so official CUT-family checkpoints (which contain
them) load with strict key matching. Follows contrastive-unpaired-translation@b3ac297:models/networks.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BINOMIAL = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0],
             5: [1.0, 4.0, 6.0, 4.0, 1.0], 6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0],
             7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]}


def binomial_filter(size: int) -> torch.Tensor:
    """Normalised 2-D binomial filter of side `size`."""
    a = torch.tensor(_BINOMIAL[size])
    f = a[:, None] * a[None, :]
    return f / f.sum()


def _pad(kind: str, sizes):
    return {"reflect": nn.ReflectionPad2d, "repl": nn.ReplicationPad2d, "replicate": nn.ReplicationPad2d,
            "zero": nn.ZeroPad2d}[kind](sizes)


class Downsample(nn.Module):
    """Blur with a binomial filter, then subsample by `stride` (depthwise)."""

    def __init__(self, channels: int, pad_type: str = "reflect", filt_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        lo, hi = (filt_size - 1) // 2, -(-(filt_size - 1) // 2)
        self.pad = _pad(pad_type, [lo, hi, lo, hi])
        self.register_buffer("filt", binomial_filter(filt_size)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=x.shape[1])


class Upsample(nn.Module):
    """Upsample by `stride` with a transposed binomial filter (depthwise); output is exactly stride×."""

    def __init__(self, channels: int, pad_type: str = "repl", filt_size: int = 4, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.filt_odd = filt_size % 2 == 1
        self.pad_size = (filt_size - 1) // 2
        self.pad = _pad(pad_type, [1, 1, 1, 1])
        filt = binomial_filter(filt_size) * (stride**2)
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=self.stride, padding=1 + self.pad_size,
                               groups=x.shape[1])[:, :, 1:, 1:]
        return y if self.filt_odd else y[:, :, :-1, :-1]

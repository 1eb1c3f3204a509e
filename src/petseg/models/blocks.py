"""Building blocks shared by the decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def match_size(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad (or crop) ``x`` to the spatial size of ``ref``.

    Sizes that are not a multiple of the network's stride round down on the way in; this puts the
    lost row or column back, so the models take any input size and return logits of that size.
    """
    dy, dx = ref.shape[-2] - x.shape[-2], ref.shape[-1] - x.shape[-1]
    if dy == 0 and dx == 0:
        return x
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class Up(nn.Module):
    """Upsample by 2, concatenate the skip connection, then DoubleConv.

    Args:
        in_channels: Channels of the input from the deeper level.
        skip_channels: Channels of the skip connection (0 for none).
        out_channels: Channels out.
        bilinear: Bilinear upsampling instead of a learned 2x2 transposed convolution.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels
        else:
            up_channels = in_channels // 2
            self.up = nn.ConvTranspose2d(in_channels, up_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(up_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([skip, match_size(x, skip)], dim=1)
        return self.conv(x)

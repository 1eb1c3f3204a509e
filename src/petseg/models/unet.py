"""The classic UNet (Ronneberger et al., 2015) with BatchNorm and same-padding convolutions."""

from __future__ import annotations

import torch
from torch import nn

from petseg.models.blocks import DoubleConv, Up, match_size


class UNet(nn.Module):
    """UNet: four max-pool downsamplings (64-128-256-512-1024 channels) and a mirrored decoder.

    Args:
        in_channels: Image channels.
        num_classes: Output channels (1 for binary logits).
        base_channels: Width of the first level; every level below doubles it (64 is the paper's).
        bilinear: Bilinear upsampling instead of transposed convolutions.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        bilinear: bool = False,
    ) -> None:
        super().__init__()
        c = [base_channels * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.inc = DoubleConv(in_channels, c[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(c[i], c[i + 1])) for i in range(4)
        )
        # A transposed convolution halves the channels before the concatenation (the paper's
        # "up-conv 2x2"); bilinear upsampling keeps them and leaves the reduction to DoubleConv.
        self.ups = nn.ModuleList(
            Up(c[i + 1], c[i], c[i], bilinear=bilinear) for i in reversed(range(4))
        )
        self.head = nn.Conv2d(c[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]  # (N, 64, H, W)
        for down in self.downs:
            skips.append(down(skips[-1]))  # ... (N, 1024, H/16, W/16)
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return match_size(self.head(y), x)

"""ResNet34-UNet: a ResNet34 encoder (He et al., 2016), written here, with a UNet decoder."""

from __future__ import annotations

import torch
from torch import nn

from petseg.models.blocks import Up, match_size


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1-projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34Encoder(nn.Module):
    """ResNet34 without its classifier; returns the features at strides 2, 4, 8, 16 and 32.

    Parameter names and shapes follow the ResNet paper's layout (``conv1``, ``bn1``,
    ``layer1``..``layer4``), so they line up one to one with the usual ResNet34 definitions.

    Args:
        in_channels: Image channels.
        base_channels: Width of the stem and first stage (64 in ResNet34); stages double it.
    """

    stage_blocks = (3, 4, 6, 3)

    def __init__(self, in_channels: int = 3, base_channels: int = 64) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(4)]  # 64, 128, 256, 512
        self.channels = (widths[0], *widths)  # channels of the five returned features
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = widths[0]
        for i, (width, blocks) in enumerate(zip(widths, self.stage_blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(in_ch, width, stride)]
            layer += [BasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            in_ch = width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: each starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))  # (N, 64, H/2, W/2)
        f2 = self.layer1(self.maxpool(f1))  # (N, 64, H/4, W/4)
        f3 = self.layer2(f2)  # (N, 128, H/8, W/8)
        f4 = self.layer3(f3)  # (N, 256, H/16, W/16)
        f5 = self.layer4(f4)  # (N, 512, H/32, W/32)
        return [f1, f2, f3, f4, f5]


class ResNet34UNet(nn.Module):
    """ResNet34 encoder + UNet decoder with skip connections back to full resolution.

    The decoder climbs from stride 32 to stride 1 in five Up blocks; the first four concatenate
    the encoder feature of the same stride, the last restores the input resolution.

    Args:
        in_channels: Image channels.
        num_classes: Output channels (1 for binary logits).
        base_channels: Encoder width (64 is ResNet34's); the decoder scales with it.
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
        self.encoder = ResNet34Encoder(in_channels, base_channels)
        skip = self.encoder.channels  # 64, 64, 128, 256, 512
        dec = [base_channels * m // 4 for m in (16, 8, 4, 2, 1)]  # 256, 128, 64, 32, 16
        self.ups = nn.ModuleList(
            [
                Up(skip[4], skip[3], dec[0], bilinear),  # /32 -> /16
                Up(dec[0], skip[2], dec[1], bilinear),  # /16 -> /8
                Up(dec[1], skip[1], dec[2], bilinear),  # /8 -> /4
                Up(dec[2], skip[0], dec[3], bilinear),  # /4 -> /2
                Up(dec[3], 0, dec[4], bilinear),  # /2 -> /1
            ]
        )
        self.head = nn.Conv2d(dec[4], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1, f2, f3, f4, f5 = self.encoder(x)
        y = f5
        for up, skip in zip(self.ups, (f4, f3, f2, f1, None), strict=True):
            y = up(y, skip)
        return match_size(self.head(y), x)

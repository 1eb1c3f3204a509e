"""Segmentation losses on logits, chosen by name.

All losses take logits ``(N, 1, H, W)`` and a float mask of the same shape. BCE is always computed
from logits (``binary_cross_entropy_with_logits``), which is safe under 16-bit mixed precision;
the soft Dice term is computed in float32.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from petseg.errors import PetsegError

LossName = Literal["bce", "dice", "bce_dice", "mse"]
LOSSES: tuple[str, ...] = get_args(LossName)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch; ``eps`` smooths empty masks."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (probs * target).sum(1)
    total = probs.sum(1) + target.sum(1)
    return (1 - (2 * inter + eps) / (total + eps)).mean()


class SegmentationLoss(nn.Module):
    """A segmentation loss by name.

    Args:
        name: ``bce``, ``dice`` (soft Dice), ``bce_dice`` (BCE + ``dice_weight`` x soft Dice)
            or ``mse`` (mean squared error between sigmoid probabilities and the mask).
        dice_weight: Weight of the Dice term in ``bce_dice``.
    """

    def __init__(self, name: LossName = "bce_dice", dice_weight: float = 1.0) -> None:
        super().__init__()
        if name not in LOSSES:
            raise PetsegError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
        self.name = name
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        if self.name == "bce":
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.name == "dice":
            return soft_dice_loss(logits, target)
        if self.name == "mse":
            return F.mse_loss(torch.sigmoid(logits.float()), target.float())
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + self.dice_weight * soft_dice_loss(logits, target)

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

LossName = Literal["bce", "dice", "bce_dice", "lovasz", "bce_lovasz", "mse"]
LOSSES: tuple[str, ...] = get_args(LossName)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch; ``eps`` smooths empty masks."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (probs * target).sum(1)
    total = probs.sum(1) + target.sum(1)
    return (1 - (2 * inter + eps) / (total + eps)).mean()


def lovasz_hinge_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Lovász hinge per image, averaged over the batch.

    Berman, Triki and Blaschko (CVPR 2018): the hinge errors ``1 - logit * sign`` of an image,
    sorted in decreasing order, weighted by the Lovász extension's gradient of the Jaccard loss,
    a convex surrogate of 1 - IoU that is tight where the signs are right with a margin of 1.
    """
    logits = logits.float().flatten(1)
    target = target.float().flatten(1)
    errors = 1 - logits * (2 * target - 1)
    errors, order = errors.sort(dim=1, descending=True)
    target = target.gather(1, order)
    positives = target.sum(1, keepdim=True)
    intersection = positives - target.cumsum(1)
    union = positives + (1 - target).cumsum(1)  # >= 1 everywhere, so no division by zero
    jaccard = 1 - intersection / union
    weights = jaccard.diff(dim=1, prepend=jaccard.new_zeros(len(jaccard), 1))
    return (F.relu(errors) * weights).sum(1).mean()


class SegmentationLoss(nn.Module):
    """A segmentation loss by name.

    Args:
        name: ``bce``, ``dice`` (soft Dice), ``bce_dice`` (BCE + ``dice_weight`` x soft Dice),
            ``lovasz`` (the Lovász hinge), ``bce_lovasz`` (BCE + ``dice_weight`` x the Lovász
            hinge) or ``mse`` (mean squared error between sigmoid probabilities and the mask).
        dice_weight: Weight of the second term in ``bce_dice`` and ``bce_lovasz``.
    """

    def __init__(self, name: LossName = "bce_dice", dice_weight: float = 1.0) -> None:
        super().__init__()
        if name not in LOSSES:
            raise PetsegError(f"loss {name!r} is not one of: {', '.join(LOSSES)}")
        self.name = name
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        if self.name == "bce":
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.name == "dice":
            return soft_dice_loss(logits, target)
        if self.name == "lovasz":
            return lovasz_hinge_loss(logits, target)
        if self.name == "mse":
            return F.mse_loss(torch.sigmoid(logits.float()), target.float())
        bce = F.binary_cross_entropy_with_logits(logits, target)
        if self.name == "bce_lovasz":
            return bce + self.dice_weight * lovasz_hinge_loss(logits, target)
        return bce + self.dice_weight * soft_dice_loss(logits, target)

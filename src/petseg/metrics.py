"""Dice and IoU for binary masks, per image and over a whole dataset, on torchmetrics.

Names say which quantity they are, everywhere (TensorBoard, metrics.json, per_image.csv):
``dice`` and ``iou`` are per image (and their means over a set: the course's "average Dice over
the test set"), ``dice_dataset`` and ``iou_dataset`` pool the pixel counts of all images first.
An image whose prediction and mask are both empty scores 1 (torchmetrics leaves it NaN).

Predictions are thresholded by ``petseg.inference.predicted_mask``, as everywhere else.
"""

from __future__ import annotations

import torch
from torchmetrics.segmentation import DiceScore
from torchmetrics.utilities import dim_zero_cat

from petseg.inference import predicted_mask


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, with 1 where both are zero (empty prediction, empty mask)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-12), 1.0)


class BinarySegmentationScores(DiceScore):
    """Dice and IoU of thresholded logits against binary masks.

    Torchmetrics' ``DiceScore`` keeps each image's ``2|P∩T|`` and ``|P|+|T|`` (its states are
    concatenated across processes in DDP); this class only reads them differently.

    Args:
        threshold: Probability above which a pixel is predicted pet.
    """

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(num_classes=1, average="none", input_format="one-hot", **kwargs)
        self.threshold = threshold

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add a batch of logits ``(N, 1, H, W)`` and masks ``(N, 1, H, W)`` with values 0/1."""
        preds = predicted_mask(logits.detach(), self.threshold).long()
        super().update(preds, target.long())

    def _counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        twice_inter = dim_zero_cat(self.numerator).float().flatten()  # (N,) 2|P∩T| per image
        total = dim_zero_cat(self.denominator).float().flatten()  # (N,) |P|+|T| per image
        return twice_inter, total

    def per_image(self) -> dict[str, torch.Tensor]:
        """Dice and IoU of every image seen, in order: ``{"dice": (N,), "iou": (N,)}``."""
        twice_inter, total = self._counts()
        inter = twice_inter / 2
        return {"dice": _ratio(twice_inter, total), "iou": _ratio(inter, total - inter)}

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """``dice``, ``iou`` (means of the per-image scores), ``dice_dataset``, ``iou_dataset``
        (pooled over all pixels)."""
        per_image = self.per_image()
        twice_inter, total = self._counts()
        inter, total_sum = twice_inter.sum() / 2, total.sum()
        return {
            "dice": per_image["dice"].mean(),
            "iou": per_image["iou"].mean(),
            "dice_dataset": _ratio(2 * inter, total_sum),
            "iou_dataset": _ratio(inter, total_sum - inter),
        }

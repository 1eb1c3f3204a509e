"""Drawing masks over images with torchvision's utilities (no hand-written blending)."""

from __future__ import annotations

import kornia
import torch
from torchvision.utils import draw_segmentation_masks, make_grid

from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD

TRUTH_COLOUR = "lime"
PRED_COLOUR = "magenta"


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised float images ``(N, 3, H, W)`` back to uint8."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device)
    std = torch.tensor(IMAGENET_STD, device=images.device)
    restored = kornia.enhance.denormalize(images.float(), mean, std)
    return (restored.clamp(0, 1) * 255).round().to(torch.uint8)


def overlay(image: torch.Tensor, mask: torch.Tensor, colour: str = PRED_COLOUR) -> torch.Tensor:
    """A uint8 image ``(3, H, W)`` with a binary ``mask`` ``(H, W)`` drawn over it at 45%."""
    return draw_segmentation_masks(image.cpu(), mask.cpu().bool(), alpha=0.45, colors=colour)


def comparison_grid(images: torch.Tensor, masks: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """One row per image: the image, its ground truth overlaid, the prediction overlaid.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        masks: ground truth ``(N, H, W)`` or ``(N, 1, H, W)``, 0/1.
        preds: predicted masks, same shape as ``masks``, 0/1.
    Returns:
        A uint8 grid ``(3, H', W')`` for TensorBoard or ``torchvision.io.write_png``.
    """
    tiles = []
    for image, mask, pred in zip(images.cpu(), masks.cpu(), preds.cpu(), strict=True):
        tiles += [
            image,
            overlay(image, mask.squeeze(), TRUTH_COLOUR),
            overlay(image, pred.squeeze()),
        ]
    return make_grid(tiles, nrow=3, padding=2, pad_value=255)

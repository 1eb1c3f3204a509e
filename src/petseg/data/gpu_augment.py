"""Batched augmentation and normalisation on the training device, for the cached data path.

The same families of changes as the albumentations pipelines, drawn per image but applied to the
whole batch in a few tensor operations: horizontal flip; scale, rotation and translation through
one ``affine_grid``/``grid_sample`` (bilinear for images, nearest for masks); and for ``strong``
a zoom-in crop (like RandomResizedCrop), brightness, contrast, saturation and gamma.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from petseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 float) ``(N, 3, H, W)`` to ImageNet-normalised float32, computed exactly
    as albumentations' ``Normalize`` computes it."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255.0)
    return (images.float() - mean) * inv_std


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def augment(
    images: torch.Tensor, masks: torch.Tensor, strength: str = "basic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: uint8 images ``(N, 3, H, W)`` and masks ``(N, H, W)``.

    Returns float images in 0-255 ``(N, 3, H, W)`` and uint8 masks ``(N, H, W)``.
    """
    n, device = len(images), images.device
    x = images.float()
    m = masks[:, None].float()
    # One affine matrix per image: flip, then scale/rotate/translate for about half of them.
    flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
    moved = torch.rand(n, device=device) < 0.5
    scale = torch.where(moved, _uniform(n, 0.9, 1.1, device), 1.0)
    angle = torch.where(moved, _uniform(n, -15, 15, device), 0.0) * math.pi / 180
    shift = torch.where(moved[:, None], _uniform(2 * n, -0.1, 0.1, device).view(n, 2), 0.0)
    if strength == "strong":  # a zoom-in crop of 50-100% of the area, anywhere in the image
        zoom = _uniform(n, 0.5, 1.0, device).sqrt()
        scale = scale / zoom
        shift = shift + (1 - zoom)[:, None] * _uniform(2 * n, -1, 1, device).view(n, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        dim=1,
    )  # (N, 2, 3): output pixel -> input sampling position
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if strength == "strong":
        x = _colour(x, n, device)
    return x.clamp_(0, 255), m[:, 0].to(torch.uint8)


def _colour(x: torch.Tensor, n: int, device) -> torch.Tensor:
    """Brightness, contrast, saturation (each x0.8-1.2) and gamma (0.8-1.2) per image."""
    x = x * _uniform(n, 0.8, 1.2, device).view(n, 1, 1, 1)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]  # (N, 1, H, W)
    mean = grey.mean(dim=(2, 3), keepdim=True)
    x = mean + (x - mean) * _uniform(n, 0.8, 1.2, device).view(n, 1, 1, 1)
    x = grey + (x - grey) * _uniform(n, 0.8, 1.2, device).view(n, 1, 1, 1)
    gamma = _uniform(n, 0.8, 1.2, device).view(n, 1, 1, 1)
    return 255.0 * (x.clamp(0, 255) / 255.0).pow(gamma)

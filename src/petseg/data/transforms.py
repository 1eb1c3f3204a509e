"""Preprocessing and augmentation pipelines (albumentations), chosen by name.

Every pipeline resizes image and mask together to ``image_size`` (the mask with nearest
neighbour, which albumentations uses for masks), normalises with ImageNet statistics and returns
a float tensor ``(3, S, S)`` and a uint8 mask tensor ``(S, S)``.
"""

from __future__ import annotations

from typing import Literal

import albumentations as A
from albumentations.pytorch import ToTensorV2

from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError

Augment = Literal["none", "basic", "strong"]
AUGMENTS: tuple[str, ...] = ("none", "basic", "strong")


def _finish() -> list:
    return [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]


def eval_transform(image_size: int) -> A.Compose:
    """Resize and normalise, nothing random: for valid, test and predict."""
    return A.Compose([A.Resize(image_size, image_size), *_finish()])


def train_transform(image_size: int, augment: str = "basic") -> A.Compose:
    """The training pipeline for ``augment`` in ``none``, ``basic`` or ``strong``."""
    if augment not in AUGMENTS:
        raise PetsegError(f"unknown augment {augment!r}; valid names: {', '.join(AUGMENTS)}")
    if augment == "none":
        return eval_transform(image_size)
    geometric = [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-15, 15), p=0.5),
    ]
    if augment == "basic":
        return A.Compose([A.Resize(image_size, image_size), *geometric, *_finish()])
    photometric = [
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.5),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.CLAHE(p=0.1),
        A.ChannelShuffle(p=0.05),
    ]
    crop = A.RandomResizedCrop(size=(image_size, image_size), scale=(0.5, 1.0), p=1.0)
    return A.Compose([crop, *geometric, *photometric, *_finish()])

"""Preprocessing and augmentation pipelines (albumentations), chosen by name.

Every pipeline resizes image and mask together to ``image_size`` (``resize``: the image with
area averaging where it shrinks, the mask with nearest neighbour), normalises with ImageNet
statistics and returns a float tensor ``(3, S, S)`` and a uint8 mask tensor ``(S, S)``.

The presets' settings are written once, below: the cached path's batched pipelines
(``petseg.data.gpu_augment``) are built from the same names, so ``none``, ``basic`` and
``strong`` mean the same transforms, probabilities and ranges on both paths.
"""

from __future__ import annotations

from typing import Literal, get_args

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError

Augment = Literal["none", "basic", "strong"]
AUGMENTS: tuple[str, ...] = get_args(Augment)

# basic: a flip, then for half of the images scale (each axis on its own), translate (a fraction
# of the side, each axis) and rotate (degrees) about the centre. Outside the image, image and
# mask alike are filled with 0 (black; background).
FLIP_P = 0.5
AFFINE_P, AFFINE_SCALE, AFFINE_TRANSLATE, AFFINE_ROTATE = 0.5, (0.9, 1.1), 0.05, 15.0
# strong: first a random resized crop (a fraction of the area, aspect ratio 3/4 to 4/3), then
# basic, then, each with its own probability, colour (brightness, contrast and saturation
# factors within 1 +- 0.2, hue shifted by up to 0.05 of the colour wheel), gamma, CLAHE on the
# lightness (a clip limit drawn in this range, 8x8 tiles) and a channel shuffle.
CROP_AREA, CROP_RATIO = (0.5, 1.0), (3 / 4, 4 / 3)
COLOUR_P, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.5, 0.2, 0.2, 0.2, 0.05
GAMMA_P, GAMMA = 0.3, (0.8, 1.2)
CLAHE_P, CLAHE_CLIP, CLAHE_TILES = 0.1, (1.0, 4.0), (8, 8)
CHANNEL_SHUFFLE_P = 0.05


def check_augment(augment: str) -> str:
    """``augment`` if it names a preset; a ``PetsegError`` listing the presets otherwise."""
    if augment not in AUGMENTS:
        raise PetsegError(f"augment {augment!r} is not one of: {', '.join(AUGMENTS)}")
    return augment


def _finish() -> list:
    return [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]


def resize(image_size: int) -> A.Resize:
    """Image and mask to ``image_size`` x ``image_size``, the one resize of every data path.

    A shrinking image is area-averaged (OpenCV's ``INTER_AREA``): plain bilinear interpolation
    reads only the 2x2 pixels nearest each output pixel, so at the 3-4x reduction from the
    photos to 128 px it aliases fur and edges. An enlarged image is interpolated bilinearly; the
    mask always takes its nearest label.
    """
    return A.Resize(image_size, image_size, area_for_downscale="image")


def eval_transform(image_size: int) -> A.Compose:
    """Resize and normalise, nothing random: for valid, test and predict."""
    return A.Compose([resize(image_size), *_finish()])


def train_transform(image_size: int, augment: str = "basic") -> A.Compose:
    """The training pipeline for ``augment`` in ``none``, ``basic`` or ``strong``."""
    if check_augment(augment) == "none":
        return eval_transform(image_size)
    geometric = [
        A.HorizontalFlip(p=FLIP_P),
        A.Affine(
            scale=AFFINE_SCALE,
            translate_percent=(-AFFINE_TRANSLATE, AFFINE_TRANSLATE),
            rotate=(-AFFINE_ROTATE, AFFINE_ROTATE),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=AFFINE_P,
        ),
    ]
    if augment == "basic":
        return A.Compose([resize(image_size), *geometric, *_finish()])
    photometric = [
        A.ColorJitter(
            brightness=BRIGHTNESS, contrast=CONTRAST, saturation=SATURATION, hue=HUE, p=COLOUR_P
        ),
        A.RandomGamma(gamma_limit=(100 * GAMMA[0], 100 * GAMMA[1]), p=GAMMA_P),
        A.CLAHE(clip_limit=CLAHE_CLIP, tile_grid_size=CLAHE_TILES, p=CLAHE_P),
        A.ChannelShuffle(p=CHANNEL_SHUFFLE_P),
    ]
    crop = A.RandomResizedCrop(
        size=(image_size, image_size),
        scale=CROP_AREA,
        ratio=CROP_RATIO,
        area_for_downscale="image",  # as resize
        p=1.0,
    )
    return A.Compose([crop, *geometric, *photometric, *_finish()])

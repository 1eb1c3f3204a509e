"""Batched augmentation and normalisation on the training device, for the cached data path.

The presets are the albumentations pipelines of ``petseg.data.transforms``, transform for
transform, with the same probabilities and ranges (read from the same constants), built from
kornia's batched augmentations (``kornia.augmentation.AugmentationSequential``): every parameter
is drawn per image, images are resampled bilinearly and masks with nearest neighbour through the
same geometry, and outside the image both are filled with 0, as albumentations' ``Affine`` fills
them. What differs: the random resized crop of ``strong`` crops the cached ``image_size`` image
rather than the original file, kornia draws the order of the four colour changes once per batch
(albumentations per image), and colour changes are computed in float rather than rounded to
uint8 after each step.

With a ``seed``, the whole batch's augmentation is drawn from it alone (the global random state is
left as it was), so a run's cached batches follow (seed, epoch) like the standard path's.
"""

from __future__ import annotations

import functools

import kornia
import kornia.augmentation as K
import torch
from kornia.color import lab_to_rgb, rgb_to_lab

from petseg.data import transforms as T
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 float) ``(N, 3, H, W)`` to ImageNet-normalised float32 with kornia, as
    albumentations' ``Normalize`` computes it on the standard path (within 1e-6)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device) * 255.0
    std = torch.tensor(IMAGENET_STD, device=images.device) * 255.0
    return kornia.enhance.normalize(images.float(), mean, std)


class _LightnessClahe(K.RandomClahe):
    """``RandomClahe`` on the CIELAB lightness alone, as albumentations' (OpenCV's) CLAHE treats
    RGB images, computed only for the images drawn for it (kornia computes a transform for the
    whole batch and keeps the drawn images: at p=0.1, ten times the work)."""

    def apply_transform(self, input, params, flags, transform=None):
        chosen = (params["batch_prob"] > 0.5).nonzero()[:, 0]  # drawn on the CPU: no device wait
        out = input.clone()
        if len(chosen):
            index = chosen.to(input.device)
            lab = rgb_to_lab(input[index].clamp(0, 1))
            clip = {**params, "clip_limit_factor": params["clip_limit_factor"][chosen]}
            light = super().apply_transform(lab[:, :1] / 100, clip, flags) * 100
            out[index] = lab_to_rgb(torch.cat([light, lab[:, 1:]], 1)).clamp(0, 1)
        return out


@functools.cache
def pipeline(preset: str, image_size: int) -> K.AugmentationSequential | None:
    """The batched pipeline of ``preset`` for ``image_size`` images, ``None`` for ``none``.

    It stays on the CPU (only the data moves to the device), so its random parameters are drawn
    from the CPU's generator: seeding it and choosing the images a transform applies to never
    wait for the device.
    """
    if T.check_augment(preset) == "none":
        return None
    geometric = [
        K.RandomHorizontalFlip(p=T.FLIP_P),
        K.RandomAffine(
            degrees=T.AFFINE_ROTATE,
            translate=(T.AFFINE_TRANSLATE, T.AFFINE_TRANSLATE),
            scale=(*T.AFFINE_SCALE, *T.AFFINE_SCALE),  # x and y drawn apart, as albumentations
            padding_mode="zeros",
            p=T.AFFINE_P,
        ),
    ]
    if preset == "basic":
        return K.AugmentationSequential(*geometric, data_keys=["input", "mask"])
    crop = K.RandomResizedCrop(
        (image_size, image_size), scale=T.CROP_AREA, ratio=T.CROP_RATIO, align_corners=False
    )
    photometric = [
        K.ColorJitter(  # torchvision's formulas, as albumentations' ColorJitter
            brightness=(1 - T.BRIGHTNESS, 1 + T.BRIGHTNESS),
            contrast=(1 - T.CONTRAST, 1 + T.CONTRAST),
            saturation=(1 - T.SATURATION, 1 + T.SATURATION),
            hue=(-T.HUE, T.HUE),
            p=T.COLOUR_P,
        ),
        K.RandomGamma(gamma=T.GAMMA, p=T.GAMMA_P),
        _LightnessClahe(clip_limit=T.CLAHE_CLIP, grid_size=T.CLAHE_TILES, p=T.CLAHE_P),
        K.RandomChannelShuffle(p=T.CHANNEL_SHUFFLE_P),
    ]
    return K.AugmentationSequential(crop, *geometric, *photometric, data_keys=["input", "mask"])


def augment(
    images: torch.Tensor, masks: torch.Tensor, preset: str = "basic", seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: uint8 images ``(N, 3, H, W)`` and masks ``(N, H, W)``.

    Returns float images in 0-255 ``(N, 3, H, W)`` and uint8 masks ``(N, H, W)``. With ``seed``,
    the augmentation depends on it alone; without, it draws from torch's global random state.
    """
    augmenter = pipeline(preset, images.shape[-1])
    if augmenter is None:
        return images.float(), masks
    if seed is None:
        return _apply(augmenter, images, masks)
    with torch.random.fork_rng(devices=[]):  # the pipeline draws from the CPU's generator only
        torch.random.default_generator.manual_seed(seed)
        return _apply(augmenter, images, masks)


def _apply(augmenter, images: torch.Tensor, masks: torch.Tensor):
    x, m = augmenter(images.float() / 255.0, masks[:, None].float())  # kornia works in [0, 1]
    return x * 255.0, m[:, 0].to(torch.uint8)

"""Copy-paste: pets cut out of other images of the batch and pasted in, a batch augmentation.

Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance
Segmentation" (CVPR 2021): pasting objects, cut out by their masks, into other training images
puts them in new surroundings, which matters most when the training images are few. Here each
chosen image receives the pet of another image of its batch, mirrored at random and shifted by
up to a quarter of the side; the pasted pixels cover the image, and its mask becomes the union
of the two pets. The mask keeps exact labels, so the loss and the metric need nothing new.
"""

from __future__ import annotations

import torch

MAX_SHIFT = 0.25  # of the side, each axis


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x (..., H, W)`` moved by ``dy`` rows and ``dx`` columns, with zeros where it left."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def copy_paste(
    images: torch.Tensor, masks: torch.Tensor, p: float, seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste into each image, with probability ``p``, the pet of another image of the batch.

    Args:
        images: ``(N, 3, H, W)`` float images (0-255 or normalised: pixels are only moved).
        masks: ``(N, H, W)`` uint8 masks, 1 on the pet.
        p: Probability that an image receives a pet.
        seed: Draws come from this seed alone; ``None`` draws from torch's global state.

    Returns:
        New ``(images, masks)``; the inputs are left as they were.
    """
    n, h, w = masks.shape
    if n < 2 or p <= 0:
        return images, masks
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    chosen = (torch.rand(n, generator=generator) < p).tolist()
    source = ((torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n).tolist()
    mirror = (torch.rand(n, generator=generator) < 0.5).tolist()
    dys = torch.randint(-int(MAX_SHIFT * h), int(MAX_SHIFT * h) + 1, (n,), generator=generator)
    dxs = torch.randint(-int(MAX_SHIFT * w), int(MAX_SHIFT * w) + 1, (n,), generator=generator)
    out_images, out_masks = images.clone(), masks.clone()
    for i in (i for i in range(n) if chosen[i]):
        pet_image, pet_mask = images[source[i]], masks[source[i]]  # as it was: never a paste
        if mirror[i]:
            pet_image, pet_mask = pet_image.flip(-1), pet_mask.flip(-1)
        dy, dx = int(dys[i]), int(dxs[i])
        pet_image, pet_mask = shift(pet_image, dy, dx), shift(pet_mask, dy, dx)
        on_pet = pet_mask.bool()
        out_images[i] = torch.where(on_pet, pet_image, images[i])
        out_masks[i] = torch.where(on_pet, pet_mask, masks[i])
    return out_images, out_masks

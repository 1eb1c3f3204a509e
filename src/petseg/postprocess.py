"""Post-processing of a predicted mask: keep the largest pet region, fill its holes.

Importing this module is light (no torch), so the commands can name the choices in ``--help``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, get_args

from petseg.errors import PetsegError

if TYPE_CHECKING:
    from torch import Tensor

PostProcess = Literal["none", "largest", "fill", "both"]
POSTPROCESS: tuple[str, ...] = get_args(PostProcess)


def postprocess_logits(
    logits: Tensor, threshold: float = 0.5, mode: PostProcess = "none"
) -> Tensor:
    """Logits ``(N, 1, H, W)`` whose mask is post-processed: ``largest`` keeps the largest
    connected region of pet pixels (8-connected), ``fill`` fills the holes inside pet regions,
    ``both`` does one, then the other, ``none`` returns the logits as they are.

    Pixels the post-processing turns into pet or background get a logit 10 past the threshold's
    on that side; every other logit stays, so the mask at any size comes from the same logits.
    """
    if mode not in POSTPROCESS:
        raise PetsegError(f"post-processing {mode!r} is not one of: {', '.join(POSTPROCESS)}")
    if mode == "none":
        return logits
    import numpy as np
    from scipy import ndimage  # only when post-processing
    from torch import from_numpy

    from petseg.inference import predicted_mask

    at_threshold = math.log(threshold / (1 - threshold)) if threshold < 1 else math.inf
    masks = predicted_mask(logits, threshold)[:, 0].cpu().numpy()
    out = logits.clone()
    for i, mask in enumerate(masks):
        kept = mask
        if mode in ("largest", "both"):
            labels, count = ndimage.label(kept, structure=np.ones((3, 3), bool))
            if count > 1:
                kept = labels == np.bincount(labels.ravel())[1:].argmax() + 1
        if mode in ("fill", "both"):
            kept = ndimage.binary_fill_holes(kept)
        added = from_numpy(kept & ~mask).to(out.device)
        removed = from_numpy(mask & ~kept).to(out.device)
        out[i, 0][added] = at_threshold + 10
        out[i, 0][removed] = at_threshold - 10
    return out

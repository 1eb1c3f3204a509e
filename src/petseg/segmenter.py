"""``Segmenter``: a trained petseg model as a Python object, and the one inference path.

``petseg-test``, ``petseg-predict``, the test at the end of ``petseg-train`` and user code all go
through it: image -> preprocessing -> logits (optional flip TTA and post-processing) -> resize
to the image's own size -> probability -> mask. ``petseg.evaluation`` scores it over a split.

    >>> from petseg import Segmenter
    >>> seg = Segmenter.load("saved_models/resnet34_unet/version_0/resnet34_unet.pth")
    >>> mask = seg.predict("cat.jpg")  # (H, W) uint8 in {0, 1}, at the image's own size
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from petseg.checkpoints import ModelSpec, check_threshold, load_model
from petseg.data.dataset import read_image, to_rgb
from petseg.errors import PetsegError
from petseg.inference import predict_logits, predicted_mask, resize_logits, select_device
from petseg.options import PositiveInt, check_arguments
from petseg.postprocess import PostProcess, postprocess_logits
from petseg.runs import DEFAULT_SAVE_DIR, resolve_checkpoint

ImageInput = str | Path | Image.Image | np.ndarray


class Segmenter:
    """A trained model ready to segment images.

    Args:
        model: A petseg model (``build_model(arch, ...)``) with its trained weights.
        spec: Its architecture, options, image size and threshold (``ModelSpec``).
        device: ``auto`` (the GPU when there is one), ``cpu``, ``cuda``, ``cuda:N``.
        tta: Average each image's logits with its mirror image's (flip test-time augmentation).
        batch_size: Images per forward pass when given a list.
        postprocess: ``none``, ``largest`` (keep the largest pet region), ``fill`` (fill holes
            in pet regions) or ``both``, applied to the mask at the model's size.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: PositiveInt = 8,
        postprocess: PostProcess = "none",
    ) -> None:
        checked = {"batch_size": batch_size, "postprocess": postprocess}
        check_arguments(Segmenter.__init__, checked, prefix="")
        from petseg.data.transforms import eval_transform  # albumentations: imported on use

        self.spec = spec
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.tta = tta
        self.batch_size = batch_size
        self.postprocess = postprocess
        self.transform = eval_transform(spec.image_size)  # albumentations: image (and mask)
        self.checkpoint: Path | None = None  # the file it was loaded from (Segmenter.load)
        self.checkpoint_reason = ""  # why that file, when it is not the path given

    @classmethod
    def load(
        cls,
        path: str | Path,
        threshold: float | None = None,
        *,
        save_dir: str | Path = DEFAULT_SAVE_DIR,
        arch: str | None = None,
        **kwargs,
    ) -> Segmenter:
        """Load a ``.ckpt`` or ``.pth`` written by ``petseg-train`` (``weights_only=True``).

        ``best.ckpt`` or ``last.ckpt`` alone, where the working directory has no such file, is
        that file of the newest run under ``save_dir`` (of ``arch``, when given); the file taken
        is ``seg.checkpoint`` and why, in words, ``seg.checkpoint_reason``
        (``petseg.runs.resolve_checkpoint``). Its metadata is checked
        (``petseg.checkpoints.check_spec``); ``threshold``, when given, replaces the file's and
        must lie strictly between 0 and 1.
        """
        if threshold is not None:
            threshold = check_threshold(threshold, "threshold")
        checkpoint, reason = resolve_checkpoint(path, save_dir, arch)
        model, spec = load_model(checkpoint)
        if threshold is not None:
            spec = replace(spec, threshold=threshold)
        seg = cls(model, spec, **kwargs)
        seg.checkpoint, seg.checkpoint_reason = checkpoint, reason
        return seg

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 ``(H, W, 3)`` -> normalised float ``(3, S, S)``, exactly as in validation."""
        return self.transform(image=image)["image"]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(N, 1, S, S)`` of preprocessed images ``(N, 3, S, S)``."""
        logits = predict_logits(self.model, images.to(self.device), self.tta)
        return postprocess_logits(logits, self.threshold, self.postprocess)

    def predict_proba(self, images: ImageInput | Sequence[ImageInput]) -> Any:
        """Pet probability ``(H, W)`` float32 in [0, 1] at each image's own size.

        Takes a path, a PIL image (any mode; EXIF orientation applied), an ``(H, W, 3)`` uint8
        array, or a list of these (processed in batches; returns a list).
        """
        return self._run(images, lambda logits: torch.sigmoid(logits).numpy().astype(np.float32))

    def predict(self, images: ImageInput | Sequence[ImageInput]) -> Any:
        """Binary mask ``(H, W)`` uint8 in {0, 1} (1 = pet) at each image's own size."""
        return self._run(images, lambda logits: self.mask(logits).numpy().astype(np.uint8))

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """The pet mask (bool) of logits, at this segmenter's threshold."""
        return predicted_mask(logits, self.threshold)

    def _run(self, images, finish) -> Any:
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results = [finish(logits[0]) for logits in self.full_size_logits(map(as_rgb, items))]
        return results[0] if single else results

    def full_size_logits(self, arrays: Iterator[np.ndarray]) -> Iterator[torch.Tensor]:
        """Logits ``(1, H, W)`` on the CPU for each RGB array, at its own size, in batches."""
        batch: list[np.ndarray] = []
        for array in (*arrays, None):
            if array is not None:
                batch.append(array)
            if batch and (array is None or len(batch) == self.batch_size):
                logits = self.logits(torch.stack([self.preprocess(a) for a in batch]))
                for logit, image in zip(logits, batch, strict=True):
                    yield resize_logits(logit[None], image.shape[:2])[0].cpu()
                batch = []


def as_rgb(image: ImageInput) -> np.ndarray:
    """Any accepted input as an RGB uint8 array ``(H, W, 3)``, as a viewer shows it."""
    if isinstance(image, (str, Path)):
        return read_image(image, exif=True)
    if isinstance(image, Image.Image):
        return to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            return image
        if image.dtype == np.uint8 and image.ndim == 2:
            return np.repeat(image[..., None], 3, axis=2)
        raise PetsegError(
            f"an image array must be uint8 (H, W, 3) RGB or (H, W) grey, not {image.dtype} "
            f"{image.shape}"
        )
    raise PetsegError(
        f"cannot segment a {type(image).__name__}: pass a path, a PIL image or a uint8 array"
    )

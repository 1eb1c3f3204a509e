"""``Segmenter``: a trained petseg model as a Python object, and the one inference path.

``petseg-test``, ``petseg-predict``, the test at the end of ``petseg-train`` and user code all go
through it: image -> preprocessing -> logits (optional flip TTA and post-processing) -> resize
to the image's own size -> probability -> mask.

    >>> from petseg import Segmenter
    >>> seg = Segmenter.load("saved_models/resnet34_unet/version_0/resnet34_unet.pth")
    >>> mask = seg.predict("cat.jpg")  # (H, W) uint8 in {0, 1}, at the image's own size
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from petseg.checkpoints import ModelSpec, check_threshold, load_model
from petseg.data.dataset import OxfordPetDataset, read_image, to_rgb
from petseg.errors import PetsegError
from petseg.inference import predict_logits, predicted_mask, resize_logits, select_device
from petseg.postprocess import PostProcess, postprocess_logits
from petseg.runs import DEFAULT_SAVE_DIR, resolve_checkpoint

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Evaluation:
    """Scores of a model on a split: summary numbers, one row per image, and the logits of the
    best and worst images (by Dice) for drawing them without running the model again."""

    summary: dict[str, float]
    per_image: dict[str, list] = field(default_factory=dict)
    full_res: dict[str, float] | None = None
    best: list[int] = field(default_factory=list)  # indices, best first
    worst: list[int] = field(default_factory=list)  # indices, worst first
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # of best and worst, (1, S, S)


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
        batch_size: int = 8,
        postprocess: PostProcess = "none",
    ) -> None:
        if batch_size < 1:
            raise PetsegError(f"--batch_size {batch_size} must be at least 1")
        postprocess_logits(torch.zeros(1, 1, 1, 1), mode=postprocess)  # a bad name fails here
        from petseg.data.transforms import eval_transform  # albumentations: imported on use

        self.spec = spec
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.tta = tta
        self.batch_size = batch_size
        self.postprocess = postprocess
        self._transform = eval_transform(spec.image_size)
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
        return self._transform(image=image)["image"]

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

    def evaluate(
        self,
        dataset: OxfordPetDataset,
        num_workers: int = 0,
        full_res: bool = False,
        keep: int = 8,
        progress: bool = True,
    ) -> Evaluation:
        """Dice and IoU on a split at model size and, with ``full_res``, at each image's original
        size (logits resized bilinearly, scored against the original mask). Keeps the logits of
        the ``keep`` best and worst images for ``petseg.report.write_overlays``."""
        from petseg.metrics import BinarySegmentationScores  # torchmetrics: only when scoring

        if len(dataset) == 0:
            raise PetsegError(f"the {dataset.split} split under {dataset.root} has no images")
        loader = DataLoader(
            _EvalItems(dataset, self._transform, full_res),
            batch_size=self.batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
        )
        # One process scores the whole split: no syncing, even inside a DDP run.
        scores = BinarySegmentationScores(self.threshold, sync_on_compute=False).to(self.device)
        full = None
        if full_res:
            full = BinarySegmentationScores(self.threshold, sync_on_compute=False).to(self.device)
        foreground: list[float] = []
        best: list = []  # heaps of (dice, index, logits): the `keep` best ...
        worst: list = []  # ... and (-dice, -index, logits): the `keep` worst
        bar = tqdm(loader, desc=f"{dataset.split}", unit="batch", disable=not progress)
        for images, masks, originals in bar:
            masks = masks.to(self.device).unsqueeze(1).float()  # (N, 1, S, S)
            logits = self.logits(images)
            scores.update(logits, masks)
            foreground += masks.flatten(1).mean(1).tolist()
            dice = scores.per_image()["dice"][-len(images) :].tolist()
            for offset, (value, logit) in enumerate(zip(dice, logits.cpu(), strict=True)):
                index = len(foreground) - len(images) + offset
                _keep(best, (value, -index, logit), keep)
                _keep(worst, (-value, index, logit), keep)
            if full is not None:
                for logit, original in zip(logits, originals, strict=True):
                    target = original.to(self.device)[None, None].float()  # (1, 1, H, W)
                    full.update(resize_logits(logit[None], tuple(original.shape)), target)
        per_image = {"name": list(dataset.names)}
        per_image |= {k: v.tolist() for k, v in scores.per_image().items()}
        per_image["foreground"] = foreground
        summary = {k: float(v) for k, v in scores.compute().items()}
        full_summary = None
        if full is not None:
            full_summary = {k: float(v) for k, v in full.compute().items()}
            per_image |= {f"{k}_full_res": v.tolist() for k, v in full.per_image().items()}
        best, worst = sorted(best, reverse=True), sorted(worst, reverse=True)
        logits_kept = {-e[1]: e[3] for e in best} | {e[1]: e[3] for e in worst}
        return Evaluation(
            summary, per_image, full_summary, [-e[1] for e in best], [e[1] for e in worst],
            logits_kept,
        )  # fmt: skip


def _keep(heap: list, item: tuple, size: int) -> None:
    """Keep the ``size`` largest ``(key, tiebreak, tensor)`` items in ``heap``."""
    if size <= 0:
        return
    entry = (item[0], item[1], id(item[2]), item[2])  # id() before the tensor: never compared
    if len(heap) < size:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)


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


class _EvalItems(Dataset):
    """A split's (image, mask) at model size, plus the original-size mask when asked."""

    def __init__(self, dataset: OxfordPetDataset, transform, with_original: bool) -> None:
        self.dataset, self.transform, self.with_original = dataset, transform, with_original

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset.load(index)
        out = self.transform(image=image, mask=mask)
        original = torch.from_numpy(mask) if self.with_original else None
        return out["image"], out["mask"], original


def _collate(items):
    images, masks, originals = zip(*items, strict=True)
    return torch.stack(images), torch.stack(masks), list(originals)

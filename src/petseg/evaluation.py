"""Scoring a ``Segmenter`` over a split of the dataset: the numbers behind ``petseg-test``'s report.

Dice and IoU per image and over the split (torchmetrics, ``petseg.metrics``), at the model's size
and at each image's original size, and the best and worst images with their logits, so that the
report draws them without running the model again. The prediction itself is the Segmenter's: this
module only feeds it a split and keeps score.

    >>> from petseg import Segmenter, evaluate
    >>> from petseg.data import OxfordPetDataset
    >>> seg = Segmenter.load("best.ckpt")
    >>> evaluate(seg, OxfordPetDataset("dataset/oxford-iiit-pet", "test")).summary["dice"]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from petseg.data.dataset import OxfordPetDataset
from petseg.errors import PetsegError
from petseg.inference import resize_logits
from petseg.metrics import BinarySegmentationScores
from petseg.segmenter import Segmenter


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


def evaluate(
    segmenter: Segmenter,
    dataset: OxfordPetDataset,
    num_workers: int = 0,
    full_res: bool = False,
    keep: int = 8,
    progress: bool = True,
) -> Evaluation:
    """Dice and IoU of ``segmenter`` on a split at model size and, with ``full_res``, at each
    image's original size (logits resized bilinearly, scored against the original mask). Keeps
    the logits of the ``keep`` best and worst images for ``petseg.report.write_overlays``."""
    if len(dataset) == 0:
        raise PetsegError(f"the {dataset.split} split under {dataset.root} has no images")
    loader = DataLoader(
        _EvalItems(dataset, segmenter.transform, full_res),
        batch_size=segmenter.batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    # One process scores the whole split: no syncing, even inside a DDP run.
    threshold, device = segmenter.threshold, segmenter.device
    scores = BinarySegmentationScores(threshold, sync_on_compute=False).to(device)
    full = None
    if full_res:
        full = BinarySegmentationScores(threshold, sync_on_compute=False).to(device)
    foreground: list[float] = []
    best: list = []  # heaps of (dice, index, logits): the `keep` best ...
    worst: list = []  # ... and (-dice, -index, logits): the `keep` worst
    bar = tqdm(loader, desc=f"{dataset.split}", unit="batch", disable=not progress)
    for images, masks, originals in bar:
        masks = masks.to(device).unsqueeze(1).float()  # (N, 1, S, S)
        logits = segmenter.logits(images)
        scores.update(logits, masks)
        foreground += masks.flatten(1).mean(1).tolist()
        dice = scores.per_image()["dice"][-len(images) :].tolist()
        for offset, (value, logit) in enumerate(zip(dice, logits.cpu(), strict=True)):
            index = len(foreground) - len(images) + offset
            _keep(best, (value, -index, logit), keep)
            _keep(worst, (-value, index, logit), keep)
        if full is not None:
            for logit, original in zip(logits, originals, strict=True):
                target = original.to(device)[None, None].float()  # (1, 1, H, W)
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

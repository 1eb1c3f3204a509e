"""Running a trained model: logits with optional flip TTA, full-size masks, test-set evaluation."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from petseg.data.dataset import OxfordPetDataset
from petseg.metrics import BinarySegmentationScores


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on GPUs that have it (else fp16); nothing on the CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, 1, H, W)``; with ``tta``, the mean of the image's and its mirror's."""
    device = images.device
    with autocast(device):
        logits = model(images).float()
        if tta:
            logits = (logits + model(images.flip(-1)).float().flip(-1)) / 2
    return logits


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits ``(N, 1, h, w)`` to ``size`` (H, W)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class _EvalItems(Dataset):
    """A split's (image, mask) at model size, plus the original-size mask when asked."""

    def __init__(self, dataset: OxfordPetDataset, with_original: bool) -> None:
        self.dataset, self.with_original = dataset, with_original

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset.load(index)
        out = self.dataset.transform(image=image, mask=mask)
        original = torch.from_numpy(mask) if self.with_original else None
        return out["image"], out["mask"], original


def _collate(items):
    images, masks, originals = zip(*items, strict=True)
    return torch.stack(images), torch.stack(masks), list(originals)


@dataclass
class Evaluation:
    """Scores of a model on a split: summary numbers and one row per image."""

    summary: dict[str, float]
    per_image: dict[str, list] = field(default_factory=dict)
    full_res: dict[str, float] | None = None


def evaluate(
    model: nn.Module,
    dataset: OxfordPetDataset,
    device: torch.device,
    batch_size: int = 16,
    num_workers: int = 0,
    tta: bool = False,
    full_res: bool = False,
    threshold: float = 0.5,
    progress: bool = True,
) -> Evaluation:
    """Dice and IoU of ``model`` on ``dataset`` at model size and, with ``full_res``, at each
    image's original size (logits resized bilinearly, scored against the original mask)."""
    model = model.to(device).eval()
    loader = DataLoader(
        _EvalItems(dataset, full_res),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    scores = BinarySegmentationScores(threshold).to(device)
    full = BinarySegmentationScores(threshold).to(device) if full_res else None
    foreground: list[float] = []
    for images, masks, originals in tqdm(loader, desc="test", unit="batch", disable=not progress):
        masks = masks.to(device).unsqueeze(1).float()  # (N, 1, S, S)
        logits = predict_logits(model, images.to(device), tta)
        scores.update(logits, masks)
        foreground += masks.flatten(1).mean(1).tolist()
        if full is not None:
            for logit, original in zip(logits, originals, strict=True):
                target = original.to(device)[None, None].float()  # (1, 1, H, W)
                full.update(resize_logits(logit[None], tuple(original.shape)), target)
    per_image = {k: v.tolist() for k, v in scores.per_image().items()}
    per_image = {"name": dataset.names, **per_image, "foreground": foreground}
    summary = {k: float(v) for k, v in scores.compute().items()}
    full_summary = None
    if full is not None:
        full_summary = {k: float(v) for k, v in full.compute().items()}
        per_image.update({f"{k}_full_res": v.tolist() for k, v in full.per_image().items()})
    return Evaluation(summary, per_image, full_summary)


def binary_mask(logits: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """A uint8 mask (H, W) with 0 and 255 from logits ``(1, H, W)`` or ``(H, W)``."""
    pred = torch.sigmoid(logits.float().squeeze()) > threshold
    return pred.to(torch.uint8).mul(255).cpu().numpy()

"""petseg-test's report: metrics.json, per_image.csv and overlays of the best and worst images."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.io import write_png

from petseg.data.dataset import OxfordPetDataset
from petseg.inference import Evaluation, predict_logits, resize_logits
from petseg.visualize import comparison_grid


def write_metrics(path: Path, evaluation: Evaluation, info: dict[str, Any]) -> None:
    """metrics.json: the summary at model size, the full-resolution summary if any, and ``info``."""
    metrics = {
        **info,
        "num_images": len(evaluation.per_image["name"]),
        "dice": evaluation.summary["dice"],
        "dice_dataset": evaluation.summary["dice_dataset"],
        "iou": evaluation.summary["iou"],
    }
    if evaluation.full_res is not None:
        metrics["full_res"] = evaluation.full_res
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def write_per_image(path: Path, evaluation: Evaluation) -> None:
    """per_image.csv: one row per image (name, dice, iou, foreground, full-resolution columns)."""
    columns = list(evaluation.per_image)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in zip(*(evaluation.per_image[c] for c in columns), strict=True):
            writer.writerow([v if isinstance(v, str) else f"{v:.6f}" for v in row])


def write_overlays(
    folder: Path,
    model: nn.Module,
    dataset: OxfordPetDataset,
    evaluation: Evaluation,
    device: torch.device,
    count: int = 8,
    tta: bool = False,
    threshold: float = 0.5,
) -> list[Path]:
    """Overlay PNGs (image | ground truth | prediction, at the image's own size) of the ``count``
    best and ``count`` worst images by Dice."""
    folder.mkdir(parents=True, exist_ok=True)
    dice = evaluation.per_image["dice"]
    order = sorted(range(len(dice)), key=lambda i: dice[i])
    picks = [("worst", order[:count]), ("best", order[::-1][:count])]
    written = []
    for label, indices in picks:
        for rank, index in enumerate(indices, start=1):
            image, mask = dataset.load(index)
            tensor = dataset.transform(image=image, mask=mask)["image"][None].to(device)
            logits = resize_logits(predict_logits(model, tensor, tta), mask.shape)
            pred = torch.sigmoid(logits[0]) > threshold
            image_t = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) uint8
            grid = comparison_grid(image_t[None], torch.from_numpy(mask)[None], pred.cpu())
            name = f"{label}_{rank:02d}_{dataset.names[index]}_dice{dice[index]:.3f}.png"
            write_png(grid, str(folder / name))
            written.append(folder / name)
    return written

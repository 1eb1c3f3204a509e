"""The test report that ``petseg-test`` and the end of ``petseg-train`` share: evaluate a model on
the test split, print the scores, and write metrics.json, per_image.csv and overlays."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_png

from petseg.data.dataset import OxfordPetDataset
from petseg.errors import PetsegError
from petseg.inference import resize_logits
from petseg.segmenter import Evaluation, Segmenter
from petseg.visualize import comparison_grid

REPORT_FILES = ("metrics.json", "per_image.csv", "overlays")
SUMMARY_KEYS = ("dice", "iou", "dice_dataset", "iou_dataset")


def check_report_folder(folder: str | Path) -> Path:
    """A folder for a new report: refuses one that already holds a report (nothing is replaced)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PetsegError(f"--output {folder} is a file, not a folder; pass a folder")
    taken = [name for name in REPORT_FILES if (folder / name).exists()]
    if taken:
        raise PetsegError(
            f"--output {folder} already holds a report ({', '.join(taken)}); "
            "pass a new folder so the earlier report is kept"
        )
    return folder


def score_test_split(
    segmenter: Segmenter,
    root: str | Path,
    output: str | Path | None = None,
    full_res: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    info: dict[str, Any] | None = None,
    skip_missing: bool = False,
) -> Evaluation:
    """Score ``segmenter`` on the test split of ``root``, print the scores and, with ``output``,
    write the report there. With ``skip_missing``, missing and unreadable files are left out
    (with a warning), as ``--data.skip_missing true`` leaves them out of training."""
    from petseg.data.transforms import eval_transform

    transform = eval_transform(segmenter.image_size)
    dataset = OxfordPetDataset(root, "test", transform, skip_missing=skip_missing)
    if skip_missing:
        dataset.check_files(progress=False)
    evaluation = segmenter.evaluate(dataset, num_workers, full_res, progress=progress)
    print(f"test images        {len(dataset)}")
    print_scores(evaluation.summary)
    if evaluation.full_res is not None:
        print("at original image size:")
        print_scores(evaluation.full_res)
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        details = {"arch": segmenter.arch, "image_size": segmenter.image_size,
                   "threshold": segmenter.threshold, "tta": segmenter.tta,
                   "postprocess": segmenter.postprocess}  # fmt: skip
        details |= info or {}
        write_metrics(out / "metrics.json", evaluation, details)
        write_per_image(out / "per_image.csv", evaluation)
        overlays = write_overlays(out / "overlays", dataset, evaluation, segmenter)
        print(f"report             {out}/ (metrics.json, per_image.csv, {len(overlays)} overlays)")
    return evaluation


def print_scores(scores: dict[str, float], prefix: str = "test/") -> None:
    for key in SUMMARY_KEYS:
        if key in scores:
            print(f"{prefix + key:<18} {float(scores[key]):.4f}")


def write_metrics(path: Path, evaluation: Evaluation, info: dict[str, Any]) -> None:
    """metrics.json: the summary at model size, the full-resolution summary if any, and ``info``."""
    metrics = {**info, "num_images": len(evaluation.per_image["name"]), **evaluation.summary}
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
    folder: Path, dataset: OxfordPetDataset, evaluation: Evaluation, segmenter: Segmenter
) -> list[Path]:
    """Overlay PNGs (image | ground truth | prediction, at the image's own size) of the best and
    worst images, drawn from the logits the evaluation kept (the model does not run again)."""
    folder.mkdir(parents=True, exist_ok=True)
    dice = evaluation.per_image["dice"]
    written = []
    for label, indices in (("worst", evaluation.worst), ("best", evaluation.best)):
        for rank, index in enumerate(indices, start=1):
            image, mask = dataset.load(index)
            logits = resize_logits(evaluation.logits[index][None], mask.shape)[0]
            image_t = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) uint8
            grid = comparison_grid(
                image_t[None], torch.from_numpy(mask)[None], segmenter.mask(logits)
            )
            name = f"{label}_{rank:02d}_{dataset.names[index]}_dice{dice[index]:.3f}.png"
            write_png(grid, str(folder / name))
            written.append(folder / name)
    return written

"""The test report that ``petseg-test`` and the end of ``petseg-train`` share: evaluate a model on
the test split, print the scores, and write metrics.json, per_image.csv and overlays."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_png

from petseg.data.breeds import breed_of, read_species
from petseg.data.dataset import OxfordPetDataset
from petseg.evaluation import Evaluation, evaluate
from petseg.files import atomic_write, folder_without
from petseg.inference import resize_logits
from petseg.segmenter import Segmenter
from petseg.visualize import comparison_grid

REPORT_FILES = ("metrics.json", "per_image.csv", "per_breed.csv", "overlays")
WEAKEST_SHOWN = 5  # breeds printed after the scores
WEAKEST_MIN_IMAGES = 5  # fewer test images than this say little about a breed
SUMMARY_KEYS = ("dice", "iou", "dice_dataset", "iou_dataset")


def check_report_folder(folder: str | Path) -> Path:
    """A folder for a new report: refuses one that already holds a report (nothing is replaced)."""
    return folder_without(folder, REPORT_FILES, "a report")


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
    evaluation = evaluate(segmenter, dataset, num_workers, full_res, progress=progress)
    print(f"test images        {len(dataset)}")
    print_scores(evaluation.summary)
    if evaluation.full_res is not None:
        print("at original image size:")
        print_scores(evaluation.full_res)
    breeds = per_breed(evaluation, read_species(root))
    print_weakest(breeds)
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        details = {"arch": segmenter.arch, "image_size": segmenter.image_size,
                   "threshold": segmenter.threshold, "tta": segmenter.tta,
                   "postprocess": segmenter.postprocess}  # fmt: skip
        details |= info or {}
        # each file whole or absent (written under a temporary name, renamed); metrics.json,
        # which marks a folder as holding a report, comes last
        write_per_image(out / "per_image.csv", evaluation)
        write_rows(out / "per_breed.csv", breeds)
        overlays = write_overlays(out / "overlays", dataset, evaluation, segmenter)
        write_metrics(out / "metrics.json", evaluation, details)
        files = f"metrics.json, per_image.csv, per_breed.csv, {len(overlays)} overlays"
        print(f"report             {out}/ ({files})")
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
    write_text(path, json.dumps(metrics, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: never half a file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_per_image(path: Path, evaluation: Evaluation) -> None:
    """per_image.csv: one row per image (name, dice, iou, foreground, full-resolution columns)."""
    columns = list(evaluation.per_image)
    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in zip(*(evaluation.per_image[c] for c in columns), strict=True):
        writer.writerow([v if isinstance(v, str) else f"{v:.6f}" for v in row])
    write_text(path, f.getvalue())


def per_breed(evaluation: Evaluation, species: dict[str, str]) -> list[dict[str, Any]]:
    """One row per breed, weakest first: its species (where the dataset's lists say), image
    count, mean per-image Dice and IoU (also at original size when scored there), and its worst
    image. The breed is the image name without its number (``petseg.data.breeds.breed_of``)."""
    per_image = evaluation.per_image
    full = "dice_full_res" in per_image
    key = "dice_full_res" if full else "dice"
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(per_image["name"]):
        groups.setdefault(breed_of(name), []).append(index)
    rows = []
    for breed, indices in groups.items():
        worst = min(indices, key=lambda i: per_image[key][i])
        row: dict[str, Any] = {"breed": breed, "species": species.get(breed, ""),
                               "images": len(indices)}  # fmt: skip
        columns = ["dice", "iou"] + (["dice_full_res", "iou_full_res"] if full else [])
        for column in columns:
            row[column] = sum(per_image[column][i] for i in indices) / len(indices)
        row |= {"worst_image": per_image["name"][worst], f"worst_{key}": per_image[key][worst]}
        rows.append(row)
    return sorted(rows, key=lambda r: (r[key], r["breed"]))


def print_weakest(
    rows: list[dict[str, Any]], shown: int = WEAKEST_SHOWN, min_images: int = WEAKEST_MIN_IMAGES
) -> None:
    """The weakest breeds by mean Dice (at original size when scored there), one line. Breeds
    with fewer than ``min_images`` test images are left out where at least two others remain:
    one image's score says little about its breed."""
    if len(rows) < 2:
        return
    key = "dice_full_res" if "dice_full_res" in rows[0] else "dice"
    counted = [r for r in rows if r["images"] >= min_images]
    note = f"of {len(rows)} breeds"
    if len(counted) >= 2 and len(counted) < len(rows):
        note = f"of the {len(counted)} breeds with {min_images}+ test images; all in per_breed.csv"
    else:
        counted = rows
    weakest = ", ".join(f"{r['breed']} {r[key]:.3f} ({r['images']})" for r in counted[:shown])
    print(f"weakest breeds     {weakest}  (mean {key}, images; {note})")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """A CSV with the rows' keys as columns, floats to six places."""
    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(list(rows[0]) if rows else [])
    for row in rows:
        writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row.values()])
    write_text(path, f.getvalue())


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
            head, tail = f"{label}_{rank:02d}_", f"_dice{dice[index]:.3f}.png"
            name = head + _fit(dataset.names[index], 255 - len(head) - len(tail)) + tail
            atomic_write(folder / name, lambda tmp, grid=grid: write_png(grid, str(tmp)))
            written.append(folder / name)
    return written


def _fit(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes (UTF-8), so that a long image name still makes a
    file name the folder can hold (per_image.csv keeps the whole name)."""
    encoded = name.encode("utf-8", "surrogateescape")
    return name if len(encoded) <= limit else encoded[:limit].decode("utf-8", "ignore")

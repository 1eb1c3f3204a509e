"""petseg-predict: masks and overlays for any images, at each image's own size.

Outputs mirror the inputs: ``photos/a/cat.jpg`` given as the folder ``photos`` is written as
``OUTPUT/a/cat_mask.png``; a file given directly goes to ``OUTPUT/cat_mask.png``. Two inputs
that would land on one name get ``_2``, ``_3``... (never a name another input owns), and
``OUTPUT/index.csv`` (``index-N.csv`` when that exists) lists every input: which mask and overlay
it became, or in its ``error`` column why it has none. Every file is written under a temporary
name and renamed, so a stop at any moment leaves no half-written mask or overlay, and the index is
written even when the run stops midway (the inputs not reached say so). An input whose name is too
long for the output folder once ``_overlay.png`` is added is refused before anything is written.
"""

from __future__ import annotations

import csv
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import write_png
from tqdm import tqdm

from petseg.errors import PetsegError
from petseg.files import atomic_write, folder_without, free_name
from petseg.segmenter import Segmenter, as_rgb
from petseg.visualize import overlay

INDEX = "index.csv"
SUFFIXES = ("_mask.png", "_overlay.png")


@dataclass(frozen=True)
class Job:
    """One input image and where its mask and overlay go."""

    source: Path
    stem: Path  # relative to the output folder, without the _mask.png / _overlay.png suffix

    def mask(self, output: Path) -> Path:
        return output / f"{self.stem}_mask.png"

    def overlay(self, output: Path) -> Path:
        return output / f"{self.stem}_overlay.png"


def _image_suffixes() -> set[str]:
    return {suffix.lower() for suffix in Image.registered_extensions()}


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def collect_inputs(inputs: list[str], output: Path) -> tuple[list[Job], list[str]]:
    """The images to segment and one error line per input that does not exist.

    Folders are searched recursively for image files (by suffix; files named directly are always
    tried), skipping anything inside ``output``. A folder without images is an error.
    """
    suffixes, pairs, errors = _image_suffixes(), [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in suffixes
                and not p.name.startswith(".")
                and not _inside(p, output)
            )
            if not found:
                raise PetsegError(f"input folder {item} holds no images (JPEG, PNG, GIF, ...)")
            pairs += [(p, p.relative_to(item).with_suffix("")) for p in found]
        elif item.is_file():
            pairs.append((item, Path(item.stem)))
        else:
            errors.append(f"{item}: no such file or folder")
    return _unique(pairs), errors


def _unique(pairs: list[tuple[Path, Path]]) -> list[Job]:
    """Jobs whose output stems are all different: a clash gets the first free ``_N`` suffix."""
    taken = {stem for _, stem in pairs}
    used: set[Path] = set()
    jobs = []
    for source, stem in pairs:
        if stem in used:
            n = 2
            while (candidate := stem.with_name(f"{stem.name}_{n}")) in taken | used:
                n += 1
            stem = candidate
        used.add(stem)
        jobs.append(Job(source, stem))
    return jobs


def check_outputs_free(jobs: list[Job], output: Path) -> None:
    """Refuse to replace earlier results: no mask or overlay may exist already."""
    if output.exists() and not output.is_dir():
        raise PetsegError(f"--output {output} is a file, not a folder; pass a folder")
    limit = _name_max(output)
    too_long = [
        job.source for job in jobs if len(os.fsencode(f"{job.stem.name}_overlay.png")) > limit
    ]
    if too_long:
        raise PetsegError(
            f"{len(too_long)} input name(s) are too long for --output {output} once "
            f"'_overlay.png' is added (more than {limit} bytes), e.g. {too_long[0]}; rename them "
            "(nothing was written)"
        )
    targets = [path for job in jobs for path in (job.mask(output), job.overlay(output))]
    folder_without(output, targets, "some of these results")


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest parent) takes."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.is_dir():
            try:
                return os.pathconf(candidate, "PC_NAME_MAX")
            except (OSError, ValueError, AttributeError):
                break
    return 255


def _save_png(image: torch.Tensor, path: Path) -> None:
    write_png(image, str(path))


def predict_files(
    segmenter: Segmenter,
    jobs: list[Job],
    output: Path,
    progress: bool = True,
    missing: list[str] = (),
) -> list[str]:
    """Write each job's mask (0/255, original size) and overlay, and ``index.csv``, which also
    lists ``missing`` (the error lines of inputs that do not exist).

    Returns one error line per file that could not be read; the others are still written.
    Images are read as the batches need them, so a large folder never sits in memory.
    """
    errors: list[str] = []
    pending: deque[tuple[Job, np.ndarray]] = deque()
    bar = tqdm(total=len(jobs), desc="predict", unit="image", disable=not progress)

    def readable() -> Iterator[np.ndarray]:
        for job in jobs:
            try:
                image = as_rgb(job.source)
            except PetsegError as err:
                errors.append(str(err))
                bar.update(1)
                continue
            pending.append((job, image))
            yield image

    done: dict[Job, tuple[str, str, str]] = {}  # job -> (mask, overlay, error)
    try:
        for logits in segmenter.full_size_logits(readable()):
            job, image = pending.popleft()
            mask = segmenter.mask(logits[0])  # (H, W) bool
            job.mask(output).parent.mkdir(parents=True, exist_ok=True)
            mask_image = Image.fromarray(mask.numpy().astype(np.uint8) * 255)
            atomic_write(job.mask(output), partial(mask_image.save, format="PNG"))
            drawn = overlay(torch.from_numpy(image).permute(2, 0, 1), mask)
            atomic_write(job.overlay(output), partial(_save_png, drawn))
            done[job] = (str(job.mask(output)), str(job.overlay(output)), "")
            bar.update(1)
    finally:
        bar.close()
        _write_index(jobs, done, errors, missing, output)
    return errors


def _write_index(
    jobs: list[Job],
    done: dict[Job, tuple[str, str, str]],
    errors: list[str],
    missing: list[str],
    output: Path,
) -> None:
    """``index.csv``: one row per input, written or not (then its ``error`` says why)."""
    rows = [("input", "mask", "overlay", "error")]
    for job in jobs:
        if job in done:
            rows.append((str(job.source), *done[job]))
        else:
            reason = next((e for e in errors if str(job.source) in e), None)
            rows.append((str(job.source), "", "", reason or "not written: the run stopped first"))
    rows += [(line.split(": ", 1)[0], "", "", line) for line in missing]
    if output.is_dir() and len(rows) > 1:
        with free_name(output / INDEX).open("w", newline="") as f:
            csv.writer(f).writerows(rows)

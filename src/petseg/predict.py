"""petseg-predict: masks and overlays for any images, at each image's own size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.io import write_png
from tqdm import tqdm

from petseg.data.dataset import read_image
from petseg.data.transforms import eval_transform
from petseg.errors import PetsegError
from petseg.inference import binary_mask, predict_logits, resize_logits
from petseg.visualize import overlay


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files named directly, and every file inside named folders (recursively, sorted).

    Returns the files and one error line for each input that does not exist.
    """
    files, errors = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(
                p for p in item.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        elif item.is_file():
            files.append(item)
        else:
            errors.append(f"{item}: no such file or folder")
    return files, errors


def _output_stems(files: list[Path]) -> list[str]:
    """File stems made unique (photo.jpg and photo.png become photo and photo_2)."""
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        stems.append(path.stem if seen[path.stem] == 1 else f"{path.stem}_{seen[path.stem]}")
    return stems


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    model: nn.Module,
    files: list[Path],
    output: Path,
    image_size: int,
    device: torch.device,
    batch_size: int = 8,
    tta: bool = False,
    threshold: float = 0.5,
    progress: bool = True,
) -> list[str]:
    """Write ``<stem>_mask.png`` (0/255, original size) and ``<stem>_overlay.png`` per image.

    Returns one error line per file that could not be read; the others are still written.
    """
    output.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    transform = eval_transform(image_size)
    errors: list[str] = []
    jobs = list(zip(files, _output_stems(files), strict=True))
    with tqdm(total=len(jobs), desc="predict", unit="image", disable=not progress) as bar:
        for batch in _batches(jobs, batch_size):
            loaded = []
            for path, stem in batch:
                try:
                    loaded.append((stem, read_image(path)))
                except PetsegError as err:
                    errors.append(str(err))
            if loaded:
                tensors = torch.stack([transform(image=img)["image"] for _, img in loaded])
                logits = predict_logits(model, tensors.to(device), tta)
                for (stem, image), logit in zip(loaded, logits, strict=True):
                    mask = binary_mask(resize_logits(logit[None], image.shape[:2]), threshold)
                    Image.fromarray(mask).save(output / f"{stem}_mask.png")
                    image_t = torch.from_numpy(image).permute(2, 0, 1)
                    drawn = overlay(image_t, torch.from_numpy(mask > 0))
                    write_png(drawn, str(output / f"{stem}_overlay.png"))
            bar.update(len(batch))
    return errors

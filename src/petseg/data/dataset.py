"""The Oxford-IIIT Pet dataset in its official layout, as binary pet/background masks.

Layout under ``root`` (the official archives unpacked side by side)::

    images/<name>.jpg                 # a few are really GIF or PNG; PIL reads them by content
    annotations/trimaps/<name>.png    # 1 = pet, 2 = background, 3 = border
    annotations/trainval.txt          # "<name> <class> <species> <breed>" per line
    annotations/test.txt
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from petseg.errors import PetsegError

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")

# The binary contract, written down once: trimap 1 (pet) and 3 (border) are pet, 2 is background.
PET_TRIMAP_VALUES = (1, 3)
TRIMAP_VALUES = (1, 2, 3)
VALID_EVERY = 10  # from trainval.txt, index i % 10 == 0 is valid, the rest train


def trimap_to_mask(trimap: np.ndarray) -> np.ndarray:
    """Map an official trimap (1 pet, 2 background, 3 border) to a uint8 mask (1 pet, 0 else)."""
    return np.isin(trimap, PET_TRIMAP_VALUES).astype(np.uint8)


def split_file(root: str | Path, split: str) -> Path:
    """The official list that holds ``split``: trainval.txt for train/valid, test.txt for test."""
    if split not in SPLITS:
        raise PetsegError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return Path(root) / "annotations" / ("test.txt" if split == "test" else "trainval.txt")


def read_split_file(path: str | Path) -> list[str]:
    """Image names (first column) of an official split file, in file order, blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise PetsegError(
            f"split file not found: {path} (the data root needs the official "
            "annotations/trainval.txt and annotations/test.txt)"
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def split_names(root: str | Path, split: str) -> list[str]:
    """Image names of ``split``: valid is trainval line i where i % 10 == 0, train the rest."""
    names = read_split_file(split_file(root, split))
    if split == "valid":
        return [n for i, n in enumerate(names) if i % VALID_EVERY == 0]
    if split == "train":
        return [n for i, n in enumerate(names) if i % VALID_EVERY != 0]
    return names


def read_image(path: str | Path) -> np.ndarray:
    """Read any image PIL opens (JPEG, PNG, GIF; grey, palette, RGBA) as RGB uint8 (H, W, 3)."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise PetsegError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise PetsegError(f"cannot read image {path}: {err}") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Read an official trimap PNG as a binary uint8 mask (H, W): 1 pet, 0 background."""
    try:
        with Image.open(path) as img:
            trimap = np.asarray(img)
    except FileNotFoundError:
        raise PetsegError(f"trimap not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise PetsegError(f"cannot read trimap {path}: {err}") from None
    if trimap.ndim != 2:
        raise PetsegError(f"trimap {path} has shape {trimap.shape}; expected one channel (H, W)")
    return trimap_to_mask(trimap)


class OxfordPetDataset(Dataset):
    """One split of Oxford-IIIT Pet as (image, mask) pairs.

    Args:
        root: Folder with ``images/`` and ``annotations/`` in the official layout.
        split: ``"train"``, ``"valid"`` (both from trainval.txt) or ``"test"`` (test.txt).
        transform: Albumentations-style callable ``transform(image=, mask=) -> dict``; without
            one, items are the raw ``(H, W, 3)`` uint8 image and ``(H, W)`` uint8 mask.
    """

    def __init__(self, root: str | Path, split: Split, transform: Callable | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.names = split_names(self.root, split)

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, name: str) -> Path:
        return self.root / "images" / f"{name}.jpg"

    def mask_path(self, name: str) -> Path:
        return self.root / "annotations" / "trimaps" / f"{name}.png"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed image (H, W, 3) and mask (H, W) at ``index``."""
        name = self.names[index]
        image, mask = read_image(self.image_path(name)), read_mask(self.mask_path(name))
        if image.shape[:2] != mask.shape:
            raise PetsegError(
                f"image {self.image_path(name)} is {image.shape[1]}x{image.shape[0]} but its "
                f"trimap {self.mask_path(name)} is {mask.shape[1]}x{mask.shape[0]}"
            )
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self.load(index)
        if self.transform is None:
            return image, mask
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"]

"""The Oxford-IIIT Pet dataset in its official layout, as binary pet/background masks.

Layout under ``root`` (the official archives unpacked side by side)::

    images/<name>.jpg                 # a few are really GIF or PNG; PIL reads them by content
    annotations/trimaps/<name>.png    # 1 = pet, 2 = background, 3 = border
    annotations/trainval.txt          # "<name> <class> <species> <breed>" per line
    annotations/test.txt
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from tqdm import tqdm

from petseg.data.defaults import default_workers
from petseg.errors import PetsegError, first_line

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = get_args(Split)

# The binary contract, written down once: trimap 1 (pet) and 3 (border) are pet, 2 is background.
PET_TRIMAP_VALUES = (1, 3)
TRIMAP_VALUES = (1, 2, 3)
# Larger images are refused before decoding (a 48-megapixel photo fits; Pillow's own limit,
# 89 megapixels, would take several GB to decode, score and draw at full size).
MAX_PIXELS = 50_000_000
VALID_EVERY = 10  # from trainval.txt, index i % 10 == 0 is valid, the rest train
# What that rule gives on the official annotations/trainval.txt (3,680 lines) and test.txt
# (3,669 lines); tests/test_data.py checks it against the official lists in tests/data.
OFFICIAL_SPLIT_SIZES = {"train": 3312, "valid": 368, "test": 3669}


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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PetsegError(
            f"split file {path} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}); "
            "restore the official file from annotations.tar.gz"
        ) from None
    numbered = [(i, line.split()[0]) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    first_line: dict[str, int] = {}
    for number, name in numbered:
        if not _is_plain_name(name):
            raise PetsegError(
                f"split file {path} line {number}: {name[:80]!r} is not an image name (a name "
                "in images/, without folders, '..' or an absolute path); fix that line"
            )
        if name in first_line:
            raise PetsegError(
                f"split file {path} lists {name!r} twice (lines {first_line[name]} and {number}): "
                "an image listed twice trains twice or lands in train and valid; remove the repeat"
            )
        first_line[name] = number
    return [name for _, name in numbered]


def _is_plain_name(name: str) -> bool:
    """A file name of images/ without its suffix: no folder, no parent, nothing absolute."""
    return name not in (".", "..") and not any(sep in name for sep in ("/", "\\", "\0"))


def split_names(root: str | Path, split: str) -> list[str]:
    """Image names of ``split``: valid is trainval line i where i % 10 == 0, train the rest.

    Names listed in both trainval.txt and test.txt are kept, with a warning that counts them:
    the test scores are then not on unseen images.
    """
    names = read_split_file(split_file(root, split))
    other = split_file(root, "train" if split == "test" else "test")
    if other.is_file():
        both = set(names) & set(read_split_file(other))
        if both:
            warnings.warn(
                f"{len(both)} image(s) are listed in both annotations/trainval.txt and test.txt "
                f"under {root} (e.g. {min(both)}): test scores are not on unseen images",
                stacklevel=2,
            )
    if split == "valid":
        return [n for i, n in enumerate(names) if i % VALID_EVERY == 0]
    if split == "train":
        return [n for i, n in enumerate(names) if i % VALID_EVERY != 0]
    return names


def _check_pixels(image: Image.Image, path: str | Path, kind: str) -> None:
    """Refuse, before decoding, an image larger than ``MAX_PIXELS`` (its header says its size):
    decoding and scoring it at its own size would take gigabytes."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise PetsegError(
            f"{kind} {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), more "
            f"than petseg reads ({MAX_PIXELS // 1_000_000} megapixels); shrink it"
        )


def _reading_error(kind: str, path: str | Path, err: Exception) -> PetsegError:
    if isinstance(err, FileNotFoundError):
        return PetsegError(f"{kind} not found: {path}")
    return PetsegError(f"cannot read {kind} {path}: {first_line(err)}")


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image as RGB uint8 (H, W, 3).

    16-bit grey (PIL's ``I;16`` modes, and ``I``, which holds such data) is scaled from 0-65535,
    as a viewer shows it: PIL's own conversion clips it, so most of it would become white.
    """
    if image.mode == "I" or image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.float64) / 257  # 65535 -> 255
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return np.array(image.convert("RGB"))


def read_image(path: str | Path, exif: bool = False) -> np.ndarray:
    """Read any image PIL opens (JPEG, PNG, GIF; grey, palette, RGBA) as RGB uint8 (H, W, 3).

    With ``exif``, the EXIF orientation is applied (as a viewer shows the image).
    """
    try:
        with Image.open(path) as img:
            _check_pixels(img, path, "image")
            return to_rgb(ImageOps.exif_transpose(img) if exif else img)
    except PetsegError:
        raise
    except Exception as err:  # PIL raises many types on corrupt files; all mean "unreadable"
        raise _reading_error("image", path, err) from None


def probe_image(path: str | Path) -> tuple[int, int]:
    """Decode an image cheaply and return its (width, height).

    JPEGs decode at 1/8 scale: the whole file is still read, so a truncated one still fails, at a
    fraction of the cost of a full decode.
    """
    try:
        with Image.open(path) as img:
            _check_pixels(img, path, "image")
            size = img.size
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            return size
    except PetsegError:
        raise
    except Exception as err:  # PIL raises many types on corrupt files; all mean "unreadable"
        raise _reading_error("image", path, err) from None


def read_trimap(path: str | Path) -> np.ndarray:
    """Read an official trimap PNG as uint8 (H, W), checking that it holds only 1, 2 and 3."""
    try:
        with Image.open(path) as img:
            _check_pixels(img, path, "trimap")
            trimap = np.array(img)
    except PetsegError:
        raise
    except Exception as err:  # PIL raises many types on corrupt files; all mean "unreadable"
        raise _reading_error("trimap", path, err) from None
    if trimap.ndim != 2:
        raise PetsegError(f"trimap {path} has shape {trimap.shape}; expected one channel (H, W)")
    # For integer pixels, "within min..max of 1, 2, 3" is "only 1, 2, 3", and min/max costs a
    # thirtieth of np.unique, which runs only to name the bad values (or for other dtypes).
    low, high = min(TRIMAP_VALUES), max(TRIMAP_VALUES)
    if trimap.dtype.kind in "biu" and trimap.size and low <= trimap.min() and trimap.max() <= high:
        return trimap
    values = np.unique(trimap)
    if not np.isin(values, TRIMAP_VALUES).all():
        bad = sorted(set(values.tolist()) - set(TRIMAP_VALUES))
        raise PetsegError(f"trimap {path} holds values {bad[:5]}; official trimaps hold 1, 2, 3")
    return trimap


def read_mask(path: str | Path) -> np.ndarray:
    """Read an official trimap PNG as a binary uint8 mask (H, W): 1 pet, 0 background."""
    return trimap_to_mask(read_trimap(path))


def _listing(problems: list[str], limit: int = 10) -> str:
    more = f" and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


class OxfordPetDataset(Dataset):
    """One split of Oxford-IIIT Pet as (image, mask) pairs.

    Items are looked up by index, or by ``(seed, index)``: then the transform is seeded with
    ``seed`` first, so the augmentation of every item is fixed by whoever draws the seeds (see
    ``SeededSampler``).

    Args:
        root: Folder with ``images/`` and ``annotations/`` in the official layout.
        split: ``"train"``, ``"valid"`` (both from trainval.txt) or ``"test"`` (test.txt).
        transform: Albumentations-style callable ``transform(image=, mask=) -> dict``; without
            one, items are the raw ``(H, W, 3)`` uint8 image and ``(H, W)`` uint8 mask.
        skip_missing: Drop split entries whose image or trimap file is missing (with a warning)
            instead of failing.
    """

    def __init__(
        self,
        root: str | Path,
        split: Split,
        transform: Callable | None = None,
        skip_missing: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.skip_missing = skip_missing
        names = split_names(self.root, split)
        missing = [
            n for n in names if not (self.image_path(n).is_file() and self.mask_path(n).is_file())
        ]
        if missing and not skip_missing:
            raise PetsegError(
                f"{len(missing)} of {len(names)} {split} images or trimaps listed in "
                f"{split_file(root, split)} are missing under {self.root}: {_listing(missing)} "
                "(pass --data.skip_missing true to train without them)"
            )
        if missing:
            warnings.warn(
                f"skipping {len(missing)} {split} entries with missing files", stacklevel=2
            )
        self.names = [n for n in names if n not in set(missing)]
        if not self.names:
            listed = split_file(root, split)
            why = (f"all {len(names)} {split} images listed in {listed} are missing" if names
                   else f"{listed} lists no {split} images")  # fmt: skip
            rule = "" if split == "test" else " (valid is every 10th line, train the rest)"
            raise PetsegError(f"the {split} split under {self.root} has no images: {why}{rule}")

    def check_files(self, progress: bool = True) -> list[str]:
        """Read every image (JPEG at 1/8 scale) and trimap once: unreadable or truncated files,
        image/trimap size mismatches and trimap values outside 1-3 fail here, naming the files,
        or, with ``skip_missing``, are dropped with a warning. Returns the problems found, in
        split order.

        The pairs are read by a pool of ``min(8, usable CPUs)`` threads (PIL decodes without
        holding the GIL); results come back in split order, so the report does not depend on it.
        """
        with ThreadPoolExecutor(default_workers(None)) as pool:
            results = list(
                tqdm(
                    pool.map(self._check_pair, self.names),
                    total=len(self.names),
                    desc=f"checking {self.split} files",
                    disable=not progress,
                )
            )
        problems = [problem for problem in results if problem is not None]
        if problems and not self.skip_missing:
            raise PetsegError(
                f"{len(problems)} bad {self.split} file(s): {_listing(problems, 3)} "
                "(fix or remove them, or pass --data.skip_missing true to train without them)"
            )
        if problems:
            warnings.warn(f"skipping {len(problems)} unreadable {self.split} samples", stacklevel=2)
        self.names = [n for n, problem in zip(self.names, results, strict=True) if problem is None]
        return problems

    def _check_pair(self, name: str) -> str | None:
        """What is wrong with the image and trimap of ``name``, or None."""
        try:
            size = probe_image(self.image_path(name))
            trimap = read_trimap(self.mask_path(name))
            if (trimap.shape[1], trimap.shape[0]) != size:
                raise PetsegError(self._size_message(name, size, trimap.shape))
        except PetsegError as err:
            return str(err)
        return None

    def _size_message(self, name: str, image_size: tuple[int, int], mask_shape) -> str:
        return (
            f"image {self.image_path(name)} is {image_size[0]}x{image_size[1]} but its trimap "
            f"{self.mask_path(name)} is {mask_shape[1]}x{mask_shape[0]}"
        )

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
            raise PetsegError(self._size_message(name, image.shape[1::-1], mask.shape))
        return image, mask

    def __getitem__(self, key: int | tuple[int, int]):
        seed, index = key if isinstance(key, tuple) else (None, key)
        image, mask = self.load(index)
        if self.transform is None:
            return image, mask
        if seed is not None:
            self.transform.set_random_seed(seed)
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"]

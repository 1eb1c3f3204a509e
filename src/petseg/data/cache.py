"""The fast data path: each split decoded once at ``image_size`` into uint8 tensors, cached on disk.

The cache file is keyed on the image size and on every listed file's name, size and modification
time, so it is rebuilt when the data or the size changes and reused otherwise; a truncated or
foreign file is reported and rebuilt. Images are resized exactly as the standard path resizes
them (``petseg.data.transforms.resize``); normalisation and augmentation then run batched on the
training device (``petseg.data.gpu_augment``).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from petseg.data import transforms
from petseg.data.dataset import OxfordPetDataset
from petseg.data.defaults import default_workers
from petseg.errors import first_line
from petseg.files import atomic_write

CACHE_VERSION = 2  # 2: images area-averaged where they shrink (transforms.resize)


def cache_key(dataset: OxfordPetDataset, image_size: int) -> str:
    """A hash of the image size and each listed file's name, size and modification time."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{image_size}".encode())
    for name in dataset.names:
        for path in (dataset.image_path(name), dataset.mask_path(name)):
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def decode_split(dataset: OxfordPetDataset, image_size: int, progress: bool = True) -> dict:
    """Decode and resize every item: ``images`` uint8 (N, 3, S, S), ``masks`` uint8 (N, S, S).

    The items are decoded by ``min(8, CPU count)`` threads (PIL's decoding and OpenCV's resizing
    release the GIL), each into its own row, so the result does not depend on their order: on
    the 7,349-pair rehearsal one thread was the slowest part of setting up a cached run.
    """
    images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
    masks = torch.empty(len(dataset), image_size, image_size, dtype=torch.uint8)
    local = threading.local()  # one resize pipeline a thread: albumentations' are not shared

    def decode(i: int) -> None:
        if not hasattr(local, "resize"):
            local.resize = transforms.resize(image_size)
        image, mask = dataset.load(i)
        out = local.resize(image=image, mask=mask)
        images[i] = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        masks[i] = torch.from_numpy(out["mask"])

    with ThreadPoolExecutor(default_workers(None)) as pool:
        done = pool.map(decode, range(len(dataset)))
        for _ in tqdm(done, total=len(dataset), desc=f"caching {dataset.split}",
                      disable=not progress):  # fmt: skip
            pass
    return {"images": images, "masks": masks, "names": list(dataset.names)}


def cache_path(dataset: OxfordPetDataset, image_size: int, cache_dir: str | Path) -> Path:
    """The cache file of ``dataset`` at ``image_size``: ``<split>-<size>px-<key>.pt``."""
    key = cache_key(dataset, image_size)
    return Path(cache_dir) / f"{dataset.split}-{image_size}px-{key}.pt"


def _problem(data, dataset: OxfordPetDataset, size: int) -> str | None:
    """What makes ``data`` (a loaded file) not this split's cache, or ``None``."""
    names = data.get("names") if isinstance(data, dict) else None
    # the listed names, less any that skip_missing dropped as unreadable when it was built
    if not isinstance(names, list) or not set(names) <= set(dataset.names):
        return f"it does not list {dataset.split} images of {dataset.root}"
    n = len(names)
    for key, shape in (("images", (n, 3, size, size)), ("masks", (n, size, size))):
        value = data.get(key)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8):
            return f"its {key} are not a uint8 tensor"
        if tuple(value.shape) != shape:
            return f"its {key} are {tuple(value.shape)}, not {shape}"
    return None


def _read(path: Path, dataset: OxfordPetDataset, image_size: int) -> dict | None:
    """The cache file's contents, ``None`` when there is none; a truncated or foreign file is
    reported with a warning that names it and read as none (so that it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        problem = _problem(data, dataset, image_size)
    except Exception as err:  # a truncated or non-PyTorch file raises one of many types
        problem = first_line(err)
    if problem is None:
        return data
    warnings.warn(f"cache file {path} is not a usable petseg cache ({problem}); rebuilding it",
                  stacklevel=3)  # fmt: skip
    return None


def build_cache(dataset: OxfordPetDataset, image_size: int, cache_dir: str | Path) -> dict:
    """Load the split's cache file, or check the files, decode them and write it.

    Safe for several processes at once (DDP ranks, two runs): each writes its own temporary file
    and renames it into place atomically, so a reader only ever sees a whole file.
    """
    path = cache_path(dataset, image_size, cache_dir)
    data = _read(path, dataset, image_size)
    if data is not None:
        return data
    dataset.check_files(progress=len(dataset) > 1000)  # the key stays that of the listed files
    data = decode_split(dataset, image_size, progress=len(dataset) > 1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(data, tmp))  # a killed run leaves no half cache
    return data


class CachedSplit(Dataset):
    """A decoded split held as two tensors (on the CPU or the GPU), fetched a batch at a time.

    Keys are indices, or ``(seed, index)`` pairs from ``SeededSampler``: a batch of pairs also
    carries one seed drawn from its items' seeds, for the batched augmentation
    (``petseg.data.gpu_augment``), so that it too follows (seed, epoch) alone.
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, names: list[str]) -> None:
        self.images, self.masks, self.names = images, masks, names

    @classmethod
    def load_or_build(
        cls, dataset: OxfordPetDataset, image_size: int, cache_dir: str | Path
    ) -> CachedSplit:
        """The split from its cache file, built first when there is none (``build_cache``)."""
        data = build_cache(dataset, image_size, cache_dir)
        return cls(data["images"], data["masks"], data["names"])

    def to(self, device: torch.device | str) -> CachedSplit:
        self.images, self.masks = self.images.to(device), self.masks.to(device)
        return self

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def _index(key) -> int:
        return key[1] if isinstance(key, tuple) else key

    def __getitem__(self, key):
        i = self._index(key)
        return self.images[i], self.masks[i]

    def __getitems__(self, keys: list) -> tuple:
        """``(images, masks)``, and for ``(seed, index)`` keys a third item: the batch's seed."""
        index = torch.tensor([self._index(k) for k in keys], device=self.images.device)
        batch = self.images[index], self.masks[index]
        if keys and isinstance(keys[0], tuple):
            seeds = [seed for seed, _ in keys]
            return (*batch, int(np.random.SeedSequence(seeds).generate_state(1)[0]))
        return batch


def as_batch(batch):
    """collate_fn for ``CachedSplit``: ``__getitems__`` already returns a stacked batch."""
    return batch

"""The fast data path: each split decoded once at ``image_size`` into uint8 tensors, cached on disk.

The cache file is keyed on the image size and on every listed file's name, size and modification
time, so it is rebuilt when the data or the size changes and reused otherwise. Images are resized
exactly as the standard path resizes them (the same albumentations ``Resize``); normalisation and
augmentation then run batched on the training device (``petseg.data.gpu_augment``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from petseg.data.dataset import OxfordPetDataset

CACHE_VERSION = 1


def cache_key(dataset: OxfordPetDataset, image_size: int) -> str:
    """A hash of the image size and each listed file's name, size and modification time."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{image_size}".encode())
    for name in dataset.names:
        for path in (dataset.image_path(name), dataset.mask_path(name)):
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def decode_split(dataset: OxfordPetDataset, image_size: int, progress: bool = True) -> dict:
    """Decode and resize every item: ``images`` uint8 (N, 3, S, S), ``masks`` uint8 (N, S, S)."""
    resize = A.Resize(image_size, image_size)
    images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
    masks = torch.empty(len(dataset), image_size, image_size, dtype=torch.uint8)
    for i in tqdm(range(len(dataset)), desc=f"caching {dataset.split}", disable=not progress):
        image, mask = dataset.load(i)
        out = resize(image=image, mask=mask)
        images[i] = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        masks[i] = torch.from_numpy(out["mask"])
    return {"images": images, "masks": masks, "names": list(dataset.names)}


class CachedSplit(Dataset):
    """A decoded split held as two tensors (on the CPU or the GPU), fetched a batch at a time.

    Keys are indices or ``(seed, index)`` pairs from ``SeededSampler`` (the seed is unused: the
    batched augmentation draws its own randomness).
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, names: list[str]) -> None:
        self.images, self.masks, self.names = images, masks, names

    @classmethod
    def load_or_build(
        cls, dataset: OxfordPetDataset, image_size: int, cache_dir: str | Path
    ) -> CachedSplit:
        """Load the split's cache file, or check the files, decode them and write it."""
        key = cache_key(dataset, image_size)
        path = Path(cache_dir) / f"{dataset.split}-{image_size}px-{key}.pt"
        if path.is_file():
            data = torch.load(path, weights_only=True)
        else:
            dataset.check_files(progress=len(dataset) > 1000)
            data = decode_split(dataset, image_size, progress=len(dataset) > 1000)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(data, tmp)
            tmp.replace(path)  # atomic: a killed run never leaves half a cache
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

    def __getitems__(self, keys: list) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor([self._index(k) for k in keys], device=self.images.device)
        return self.images[index], self.masks[index]


def as_batch(batch):
    """collate_fn for ``CachedSplit``: ``__getitems__`` already returns a stacked batch."""
    return batch

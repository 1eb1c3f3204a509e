"""The data paths' delivery rate: the standard loader (decoding and albumentations in worker
processes) and the cached path (tensor indexing and batched augmentation on the device)."""

from __future__ import annotations

import time

import torch

from petseg.bench.timing import median_time


def data_bench(
    root: str, size: int, batch: int, device: torch.device, batches: int, cache_dir: str
) -> dict:
    """Images/s delivered by the standard loader and by the cached path, train split."""
    from petseg.data import PetDataModule, gpu_augment
    from petseg.data.cache import CachedSplit
    from petseg.data.dataset import OxfordPetDataset

    dm = PetDataModule(root, size, batch, augment="basic", download=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    count, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(loader):
        if i == 0:  # worker start-up is a one-off; time the steady state
            count, start = 0, time.perf_counter()
        count += len(images)
        if i >= batches:
            break
    standard = count / (time.perf_counter() - start)

    split = OxfordPetDataset(root, "train")
    cached = CachedSplit.load_or_build(split, size, cache_dir).to(device)
    n = len(cached)

    def one_batch() -> None:
        index = torch.randint(0, n, (batch,)).tolist()
        images, masks = cached.__getitems__(index)
        gpu_augment.normalize(gpu_augment.augment(images, masks, "basic")[0])

    seconds = median_time(one_batch, device, repeats=max(3, batches), warmup=1)
    return {
        "standard_images_per_s": standard,
        "standard_workers": dm.num_workers,
        "cached_images_per_s": batch / seconds,
    }

"""A training sampler whose data stream depends only on (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class SeededSampler(Sampler[tuple[int, int]]):
    """Shuffles indices by ``(seed, epoch)`` and gives each one a seed for its augmentation.

    It yields ``(item_seed, index)`` pairs: ``OxfordPetDataset`` seeds each item's augmentation
    with its seed, ``CachedSplit`` draws each batch's seed from its items' seeds. The order and
    every augmentation of an epoch are then fixed by the seed and the epoch alone, whatever the
    number of loader workers and on both data paths, so a run resumed from a checkpoint sees
    exactly the batches an uninterrupted run would have seen. Lightning calls ``set_epoch``
    before every epoch.

    Args:
        num_items: Length of the dataset.
        seed: Base seed. ``PetDataModule`` passes ``torch.initial_seed()``, the seed torch was
            last seeded with: under ``petseg-train`` the run's ``--seed_everything``, which
            Lightning gives torch before the data loaders are built.
    """

    def __init__(self, num_items: int, seed: int = 0) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items).tolist()
        seeds = rng.integers(0, 2**31 - 1, self.num_items).tolist()
        return iter(zip(seeds, order, strict=True))

    def __len__(self) -> int:
        return self.num_items

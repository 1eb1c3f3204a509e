"""The LightningDataModule: train / valid / test splits of Oxford-IIIT Pet."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from petseg.data.breeds import breed_of, check_breeds, spread_subset
from petseg.data.cache import CachedSplit, as_batch, build_cache
from petseg.data.copy_paste import copy_paste
from petseg.data.dataset import OxfordPetDataset, split_names
from petseg.data.defaults import DEFAULT_ROOT, default_workers
from petseg.data.download import ensure_data
from petseg.data.sampler import SeededSampler
from petseg.data.transforms import Augment, eval_transform, train_transform
from petseg.errors import PetsegError
from petseg.options import (
    ClosedUnitInterval,
    ImageSize,
    NonNegativeInt,
    PositiveInt,
    check_arguments,
    plain,
)


class PetDataModule(L.LightningDataModule):
    """Oxford-IIIT Pet as binary masks, split train / valid (from trainval.txt) and test.

    Args:
        root: Data folder in the official layout (``images/``, ``annotations/``).
        image_size: Side of the square that images and masks are resized to.
        batch_size: Images per batch, for every split.
        num_workers: Loader processes; ``None`` picks ``min(8, usable CPUs)`` (its affinity).
        augment: Training augmentation: ``none``, ``basic`` (flip, small scale/rotate) or
            ``strong`` (adds colour, gamma, CLAHE, channel shuffle and a random resized crop).
        download: Fetch the official archives into ``root`` when it holds no data.
        skip_missing: Train without split entries whose files are missing or broken (with a
            warning) instead of stopping with the list of them.
        cache: The fast path: decode each split once at ``image_size`` into uint8 tensors kept
            in ``cache_dir`` (built by ``prepare_data``, in one process; rebuilt when the files
            or the size change), hold them on the GPU when training on one, and augment (the
            same presets) and normalise whole batches there.
        cache_dir: Where the cache files go.
        copy_paste: Probability that a training image receives the pet of another image of its
            batch, mirrored and shifted at random (``petseg.data.copy_paste``), after the other
            augmentation; 0 turns it off.
        train_limit: Train on this many images of the train split only: a deterministic subset
            spread over its breeds in proportion (``petseg.data.breeds.spread_subset``; a
            smaller limit's subset is part of a larger one's). Valid and test are unchanged.
        holdout_breeds: Breeds left out of train and valid (test keeps them), to measure how a
            model does on breeds it never saw: names as in the file names (``Bengal``,
            ``american_bulldog``).
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        image_size: ImageSize = 256,
        batch_size: PositiveInt = 16,
        num_workers: NonNegativeInt | None = None,
        augment: Augment = "basic",
        download: bool = True,
        skip_missing: bool = False,
        cache: bool = False,
        cache_dir: str = "dataset/cache",
        copy_paste: ClosedUnitInterval = 0.0,
        train_limit: PositiveInt | None = None,
        holdout_breeds: list[str] | None = None,
    ) -> None:
        super().__init__()
        # the parser checks these while parsing; this covers Python callers, from the same types
        check_arguments(PetDataModule.__init__, locals(), "data")
        # plain numbers in the checkpoint, not the parser's restricted types (weights_only)
        image_size, batch_size = plain(image_size), plain(batch_size)
        num_workers, copy_paste = plain(num_workers), plain(copy_paste)
        train_limit = plain(train_limit)
        self.save_hyperparameters()
        self.root = root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = default_workers(num_workers)
        self.augment = augment
        self.download = download
        self.skip_missing = skip_missing
        self.cache = cache
        self.cache_dir = cache_dir
        self.copy_paste = copy_paste
        self.train_limit = train_limit
        self.holdout_breeds = list(holdout_breeds or [])
        self.datasets: dict[str, OxfordPetDataset | CachedSplit] = {}
        self._prepared: dict[str, dict] = {}  # caches prepare_data built or read, for setup

    @staticmethod
    def _splits(stage: str | None) -> tuple[str, ...]:
        stages = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",)}
        return stages.get(stage, ("train", "valid", "test"))

    def prepare_data(self) -> None:
        """Download the data if asked to and, on the cached path, build the stage's cache files.

        Lightning runs this in one process per node before any ``setup``, so DDP ranks only load.
        """
        ensure_data(self.root, allow_download=self.download)
        if self.cache:
            trainer = getattr(self, "trainer", None)
            stage = trainer.state.fn.value if trainer is not None and trainer.state.fn else None
            for split in [s for s in self._splits(stage) if s not in self.datasets]:
                dataset = self._dataset(split)
                self._prepared[split] = build_cache(dataset, self.image_size, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        ensure_data(self.root, allow_download=False)
        for split in self._splits(stage):
            if split not in self.datasets:
                transform = (
                    train_transform(self.image_size, self.augment)
                    if split == "train"
                    else eval_transform(self.image_size)
                )
                dataset = self._dataset(split, transform)
                if self.cache:  # what prepare_data read here, or the file it wrote elsewhere
                    data = self._prepared.pop(split, None) or build_cache(
                        dataset, self.image_size, self.cache_dir
                    )
                    cached = CachedSplit(data["images"], data["masks"], data["names"])
                    self.datasets[split] = cached.to(self._device())
                else:
                    dataset.check_files(progress=len(dataset) > 1000)
                    self.datasets[split] = dataset

    def check_split(self, split: str) -> None:
        """Check every file of ``split`` now (downloading the data first if asked to): a bad
        file is one line naming it, or, with ``skip_missing``, a warning. ``petseg.train``
        checks the test split before fitting, since it scores it after."""
        ensure_data(self.root, allow_download=self.download)
        dataset = OxfordPetDataset(self.root, split, skip_missing=self.skip_missing)
        dataset.check_files(progress=len(dataset) > 1000)

    def _dataset(self, split: str, transform=None) -> OxfordPetDataset:
        """The split's dataset, less the held-out breeds (train, valid) and cut to
        ``train_limit`` (train)."""
        dataset = OxfordPetDataset(self.root, split, transform, self.skip_missing)
        if split == "test" or not (self.holdout_breeds or self.train_limit):
            return dataset
        names = dataset.names
        if self.holdout_breeds:
            known = {
                breed_of(n)
                for n in split_names(self.root, "train") + split_names(self.root, "valid")
            }
            held = set(check_breeds(self.holdout_breeds, known, "--data.holdout_breeds"))
            names = [n for n in names if breed_of(n) not in held]
            if not names:
                raise PetsegError(
                    f"--data.holdout_breeds leaves the {split} split without images; "
                    "hold out fewer breeds"
                )
        if split == "train" and self.train_limit:
            if self.train_limit > len(names):
                raise PetsegError(
                    f"--data.train_limit {self.train_limit} is more than the {len(names)} train "
                    f"images under {self.root}; pass at most {len(names)}"
                )
            names = spread_subset(names, self.train_limit)
        dataset.names = names
        return dataset

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        # Training order and augmentation follow (seed, epoch) alone: runs are reproducible
        # and a resumed run continues exactly where the interrupted one was.
        sampler = SeededSampler(len(dataset), torch.initial_seed()) if split == "train" else None
        workers = 0 if self.cache else self.num_workers  # the cache is already in memory
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=split == "train" and len(dataset) > self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available() and not self.cache,
            collate_fn=as_batch if self.cache else None,
        )

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batch augmentation: on the cached path the presets, and on both paths copy-paste
        (training only); on the cached path, normalisation of the uint8 batches on the device.

        Training batches of the cached path carry a seed drawn from their items' (seed, epoch)
        seeds (``CachedSplit``); the standard path's are numbered by (seed, epoch, optimizer
        step). The batch augmentation is drawn from that alone, so a resumed run repeats it.
        """
        training = self.trainer is not None and self.trainer.training
        if not self.cache and not (training and self.copy_paste):
            return batch
        images, masks, *seed = batch
        if self.cache:
            from petseg.data import gpu_augment  # imports kornia: only on the cached path

            if training:
                images, masks = gpu_augment.augment(images, masks, self.augment, *seed)
            images = gpu_augment.normalize(images)
        if training and self.copy_paste:
            images, masks = copy_paste(images, masks, self.copy_paste, self._batch_seed(seed))
        return images, masks

    def _batch_seed(self, seed: list[int]) -> int:
        """The copy-paste seed of this training batch: from the cached batch's seed, or from
        (run seed, epoch, optimizer step) on the standard path: all restored by a resume."""
        trainer = self.trainer
        key = [*seed, 1] if seed else [torch.initial_seed(), trainer.current_epoch,
                                       trainer.global_step]  # fmt: skip
        return int(np.random.SeedSequence(key).generate_state(1)[0])

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

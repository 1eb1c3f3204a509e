"""Time to a validation Dice: train with the fast configuration, the very ``configs/fast.yaml``
that ``petseg-train --config`` reads, and clock when validation Dice first reaches each target.
``petseg-bench`` runs it on a GPU only (``--time_to_dice_epochs``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from petseg.bench.timing import sync
from petseg.data.dataset import OFFICIAL_SPLIT_SIZES
from petseg.errors import PetsegError

TARGETS = (0.85, 0.90)


def read_config(path: str | Path) -> dict[str, Any]:
    """A petseg-train YAML config: ``seed_everything`` and the ``model``, ``data`` and ``trainer``
    sections."""
    path = Path(path)
    if not path.is_file():
        raise PetsegError(
            f"config not found: {path}; pass --config with the path of petseg's configs/fast.yaml"
        )
    return yaml.safe_load(path.read_text())


def fast_setup(config: dict[str, Any], root: str, arch: str, epochs: int, cache_dir: str):
    """The seeded module, the datamodule and the Trainer options of ``config`` for a timed run.

    The config's model, data and trainer sections are used as they are, with the data at ``root``
    (no download, its cache in ``cache_dir``), ``epochs`` epochs, and nothing written: no logger,
    checkpoints, progress bar, sanity validation or example images. Its ``precision: null``
    becomes what petseg-train picks (``auto_precision``).
    """
    from petseg.data import PetDataModule
    from petseg.module import SegmentationModule
    from petseg.precision import auto_precision

    L.seed_everything(config.get("seed_everything", 42), workers=True)
    module = SegmentationModule(**{**config.get("model", {}), "arch": arch, "log_images": 0})
    data = {**config.get("data", {}), "root": root, "download": False, "cache_dir": cache_dir}
    trainer = {
        **config.get("trainer", {}),
        "max_epochs": epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "num_sanity_val_steps": 0,
    }
    if trainer.get("precision") is None:
        trainer["precision"] = auto_precision(trainer.get("accelerator"))
    return module, PetDataModule(**data), trainer


class Clock(L.Callback):
    """Wall time from the start of fitting until validation Dice first reaches each target, and
    the time of every training epoch."""

    def __init__(self, targets: tuple[float, ...]) -> None:
        self.targets = targets
        self.start = 0.0
        self.reached: dict[str, float] = {}
        self.epoch_s: list[float] = []
        self.epoch_start = 0.0

    def on_train_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        sync(module.device)
        self.epoch_s.append(time.perf_counter() - self.epoch_start)

    def on_validation_end(self, trainer, module) -> None:
        # not on_validation_epoch_end: callbacks run before the module logs its epoch metrics,
        # so there val/dice is still the previous epoch's
        if trainer.sanity_checking:
            return
        dice = float(trainer.callback_metrics.get("val/dice", 0.0))
        for target in self.targets:
            if dice >= target and str(target) not in self.reached:
                self.reached[str(target)] = time.perf_counter() - self.start


def time_to_dice(
    root: str,
    arch: str,
    epochs: int,
    config: dict[str, Any],
    cache_dir: str,
    targets: tuple[float, ...] = TARGETS,
) -> dict:
    """Train ``arch`` on ``root`` with ``config`` (``configs/fast.yaml``) on the GPU: the wall time
    at which validation Dice first reaches each target, the epoch times and the test Dice of the
    final weights (scored by ``Segmenter.evaluate``, as petseg-test scores)."""
    from petseg.checkpoints import checkpoint_spec
    from petseg.data.dataset import OxfordPetDataset
    from petseg.evaluation import evaluate
    from petseg.segmenter import Segmenter

    module, dm, trainer_options = fast_setup(config, root, arch, epochs, cache_dir)
    clock = Clock(targets)
    trainer = L.Trainer(**trainer_options, callbacks=[clock])
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - start
    spec = checkpoint_spec(
        {"hyper_parameters": module.hparams, "datamodule_hyper_parameters": dm.hparams}
    )
    segmenter = Segmenter(module.net, spec, device=module.device, batch_size=dm.batch_size)
    test = evaluate(segmenter, OxfordPetDataset(root, "test"), progress=False)
    train_images = len(dm.datasets["train"])
    steady = statistics.median(clock.epoch_s[2:]) if len(clock.epoch_s) > 2 else clock.epoch_s[-1]
    full = OFFICIAL_SPLIT_SIZES["train"]  # the official train split's images
    full_epoch_s = steady * full / train_images
    return {
        "arch": arch,
        "epochs": epochs,
        "train_images": train_images,
        "seconds_to_val_dice": clock.reached,
        "fit_s": fit_s,
        "first_epoch_s": clock.epoch_s[0],
        "steady_epoch_s": steady,
        f"extrapolated_full_epoch_s ({full} images, an extrapolation)": full_epoch_s,
        "test_dice": test.summary["dice"],
    }

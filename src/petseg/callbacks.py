"""The best checkpoint of a training run, under a descriptive name and a stable one.

``BestCheckpoint`` keeps the best validation Dice as ``epochNNN-diceX.ckpt`` (the descriptive
name) and, as the same file, ``best.ckpt`` (a hard link, or a copy where links are not allowed),
replaced atomically whenever the best changes. It holds the weights only: ``last.ckpt`` is the
resumable one, so a run keeps one full checkpoint, not two.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from petseg.runs import BEST, replace_with_link


class BestCheckpoint(ModelCheckpoint):
    """The best validation Dice, weights only, as ``epochNNN-diceX.ckpt`` and ``best.ckpt``."""

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="epoch{epoch:03d}-dice{val/dice:.4f}",
            auto_insert_metric_name=False,
            monitor="val/dice",
            mode="max",
            save_weights_only=True,
        )

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key, so resuming a last.ckpt written before this class existed
        # restores the best score instead of starting the best over
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)  # called only when the best changes
        if trainer.is_global_zero:
            replace_with_link(filepath, Path(filepath).parent / BEST)

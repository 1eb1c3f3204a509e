"""petseg: binary pet/background segmentation of the Oxford-IIIT Pet dataset.

The public API, imported on first use so that ``import petseg`` stays quick:

- ``Segmenter``: load a trained model (``Segmenter.load(path)``) and segment images;
- ``evaluate``: score a ``Segmenter`` over a split (``Evaluation``: summary, per image, best and
  worst images);
- ``build_model``, ``load_model``: the plain ``nn.Module``s and rebuilding one from a file;
- ``train``: train as ``petseg-train`` does, with the same options, and get the run folder and
  its scores back (``TrainResult``);
- ``SegmentationModule``, ``PetDataModule``: the LightningModule and LightningDataModule, for
  training from Python with a ``lightning.Trainer``.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer release at import time; petseg runs offline too.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from petseg._lazy import lazy_attributes

__version__ = "0.2.0"

_WHERE = {
    "Segmenter": "petseg.segmenter",
    "evaluate": "petseg.evaluation",
    "Evaluation": "petseg.evaluation",
    "build_model": "petseg.models",
    "load_model": "petseg.checkpoints",
    "SegmentationModule": "petseg.module",
    "PetDataModule": "petseg.data.datamodule",
    "PetsegError": "petseg.errors",
    "train": "petseg.training",
    "TrainResult": "petseg.training",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_attributes(__name__, _WHERE)

"""Reading the Oxford-IIIT Pet layout, transforms, the LightningDataModule and synthetic data.

Names are imported on first use, so that commands which never train (``petseg-predict``,
``petseg-test``) do not import Lightning just by touching ``petseg.data``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "PetDataModule": "petseg.data.datamodule",
    "OxfordPetDataset": "petseg.data.dataset",
    "read_image": "petseg.data.dataset",
    "read_mask": "petseg.data.dataset",
    "split_names": "petseg.data.dataset",
    "trimap_to_mask": "petseg.data.dataset",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'petseg.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

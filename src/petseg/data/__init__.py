"""Reading the Oxford-IIIT Pet layout, transforms, the LightningDataModule and synthetic data.

Names are imported on first use, so that commands which never train (``petseg-predict``,
``petseg-test``) do not import Lightning just by touching ``petseg.data``.
"""

from __future__ import annotations

from petseg._lazy import lazy_attributes

_WHERE = {
    "PetDataModule": "petseg.data.datamodule",
    "OxfordPetDataset": "petseg.data.dataset",
    "read_image": "petseg.data.dataset",
    "read_mask": "petseg.data.dataset",
    "split_names": "petseg.data.dataset",
    "trimap_to_mask": "petseg.data.dataset",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_attributes(__name__, _WHERE)

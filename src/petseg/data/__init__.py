"""Reading the Oxford-IIIT Pet layout, transforms, the LightningDataModule and synthetic data."""

from petseg.data.datamodule import PetDataModule
from petseg.data.dataset import OxfordPetDataset, read_image, read_mask, split_names, trimap_to_mask

__all__ = [
    "OxfordPetDataset",
    "PetDataModule",
    "read_image",
    "read_mask",
    "split_names",
    "trimap_to_mask",
]

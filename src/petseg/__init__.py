"""petseg: binary pet/background segmentation of the Oxford-IIIT Pet dataset."""

import os

# albumentations asks PyPI for a newer release at import time; petseg runs offline too.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

"""Checking a data root and fetching the official archives into it."""

from __future__ import annotations

from pathlib import Path

from petseg.errors import PetsegError

DATA_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
OTHER_DATA = "a sample of it, or synthetic data from `petseg-synth DIR`"
REQUIRED = ("images", "annotations/trimaps", "annotations/trainval.txt", "annotations/test.txt")


def missing_parts(root: str | Path) -> list[str]:
    """The parts of the official layout that ``root`` lacks (empty when it is complete)."""
    root = Path(root)
    return [part for part in REQUIRED if not (root / part).exists()]


def download(root: str | Path) -> None:
    """Download and unpack images.tar.gz and annotations.tar.gz into ``root``.

    Uses torchvision's own download utilities and the URLs and checksums of its
    ``OxfordIIITPet`` dataset. Fails with one line saying where to put the data by hand.
    """
    from torchvision.datasets import OxfordIIITPet
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for url, md5 in OxfordIIITPet._RESOURCES:
        try:
            download_and_extract_archive(url, download_root=str(root), md5=md5)
        except Exception as err:  # urllib, ssl, tarfile and checksum errors all mean "no data"
            raise PetsegError(
                f"could not download {url} ({type(err).__name__}: {err}); download images.tar.gz "
                f"and annotations.tar.gz from {DATA_URL} and unpack both into {root}, or point "
                f"--data.root at a folder in the same layout ({OTHER_DATA})"
            ) from None


def ensure_data(root: str | Path, allow_download: bool) -> None:
    """Make sure ``root`` holds the official layout, downloading it when allowed."""
    root = Path(root)
    missing = missing_parts(root)
    if not missing:
        return
    if allow_download and len(missing) == len(REQUIRED):
        download(root)
        missing = missing_parts(root)
        if not missing:
            return
    hint = (
        f"download images.tar.gz and annotations.tar.gz from {DATA_URL} and unpack both there"
        if allow_download
        else f"pass --data.download true, or unpack the archives from {DATA_URL} there"
    )
    hint += f", or point --data.root at a folder in the same layout ({OTHER_DATA})"
    raise PetsegError(f"data root {root} lacks {', '.join(missing)}; {hint}")

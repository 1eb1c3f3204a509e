"""Breeds and species of Oxford-IIIT Pet images, and the breed-aware subsets of a split.

An image's breed is its file name without the trailing number (``american_bulldog_12`` ->
``american_bulldog``); its species comes from ``annotations/list.txt`` (or the split files, which
carry the same columns: ``<name> <class> <species> <breed>``, species 1 cat, 2 dog).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from petseg.errors import PetsegError

SPECIES = {"1": "cat", "2": "dog"}


def breed_of(name: str) -> str:
    """The breed in an image name: the name without its trailing ``_<number>``."""
    stem, _, number = name.rpartition("_")
    return stem if stem and number.isdigit() else name


def read_species(root: str | Path) -> dict[str, str]:
    """Breed -> ``cat`` or ``dog``, from the annotation lists under ``root`` that exist
    (``list.txt``, ``trainval.txt``, ``test.txt``); breeds found in none are left out."""
    species: dict[str, str] = {}
    for listing in ("list.txt", "trainval.txt", "test.txt"):
        path = Path(root) / "annotations" / listing
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#") and fields[2] in SPECIES:
                species.setdefault(breed_of(fields[0]), SPECIES[fields[2]])
    return species


def spread_subset(names: Sequence[str], limit: int) -> list[str]:
    """``limit`` of ``names``, spread over their breeds in proportion to each breed's share.

    Deterministic and nested: each breed's images are taken in list order, and the subset for a
    smaller limit is part of the subset for a larger one (a learning curve adds images, it does
    not swap them). Returned in the list's order.
    """
    by_breed: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_breed[breed_of(name)].append(name)
    # each image's place within its breed, as a fraction of the breed: taking the smallest
    # fractions first gives every breed its share at every limit
    rank = {}
    for breed, members in by_breed.items():
        for i, name in enumerate(members):
            rank[name] = ((i + 0.5) / len(members), breed, i)
    chosen = set(sorted(names, key=rank.__getitem__)[:limit])
    return [name for name in names if name in chosen]


def check_breeds(requested: Iterable[str], known: Iterable[str], option: str) -> list[str]:
    """``requested`` breeds, each one of ``known``, or a one-line error listing the known ones."""
    requested, known = list(requested), sorted(set(known))
    unknown = [b for b in requested if b not in known]
    if unknown:
        raise PetsegError(
            f"{option}: unknown breed(s) {', '.join(unknown)}; the breeds of this dataset are "
            f"{', '.join(known)}"
        )
    return requested

"""``petseg-bench rehearse DIR``: a full-size rehearsal dataset, for running petseg at the scale
of the official release where the release itself is not at hand.

DIR gets the official split lists (``trainval.txt``, ``test.txt``: 3,680 + 3,669 = 7,349 pairs)
and, for every listed name, an image and a trimap linked (or copied) from a smaller real dataset
in the official layout: the pair of the same name where it has one, else the pairs of the same
breed in turn, else all its pairs in turn. So every part of petseg meets the full release's
lists, folders and image counts, but the pixels repeat: it is a rehearsal, not data, and its
scores mean nothing. ``REHEARSAL.md`` in DIR says so and ``rehearsal-mapping.tsv`` names the pair
behind each name.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from petseg.errors import PetsegError
from petseg.files import empty_folder

SPLITS = ("trainval", "test")
CHECKOUT_SHARED = Path("../shared")


def listed_names(path: Path) -> list[str]:
    """The names of a split file (first field of each line; ``#`` lines and blanks skipped)."""
    if not path.is_file():
        raise PetsegError(f"split list not found: {path}")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def source_pairs(pixels: Path) -> list[str]:
    """Names of ``pixels``' pairs that have both an image and a trimap, sorted."""
    names = sorted(
        p.stem for p in (pixels / "images").glob("*.jpg")
        if (pixels / "annotations" / "trimaps" / f"{p.stem}.png").is_file()
    )  # fmt: skip
    if not names:
        raise PetsegError(f"{pixels} holds no image/trimap pairs (images/*.jpg with "
                          "annotations/trimaps/*.png)")  # fmt: skip
    return names


def breed(name: str) -> str:
    """``Bengal_12`` -> ``Bengal``: the official names are the breed and a number."""
    return name.rsplit("_", 1)[0]


def mapping(names: list[str], sources: list[str]) -> dict[str, str]:
    """Each listed name's source pair: itself, else its breed's pairs in turn, else all in turn."""
    available = set(sources)
    by_breed: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        by_breed[breed(source)].append(source)
    turn: dict[str, int] = defaultdict(int)
    result = {}
    for name in names:
        if name in available:
            result[name] = name
            continue
        pool_key = breed(name) if breed(name) in by_breed else ""
        pool = by_breed[pool_key] if pool_key else sources
        result[name] = pool[turn[pool_key] % len(pool)]
        turn[pool_key] += 1
    return result


def rehearse(root: Path, splits: Path, pixels: Path, copy: bool = False) -> dict[str, int]:
    """Write the rehearsal dataset into ``root`` (new or empty); counts of what it holds."""
    empty_folder(root, option="")
    lists = {split: listed_names(splits / f"{split}.txt") for split in SPLITS}
    names = list(dict.fromkeys(lists["trainval"] + lists["test"]))
    sources = source_pairs(pixels.resolve())
    pairs = mapping(names, sources)
    images, trimaps = root / "images", root / "annotations" / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir(parents=True)
    place = shutil.copyfile if copy else (lambda src, dst: Path(dst).symlink_to(src))
    src_root = pixels.resolve()
    for name, source in pairs.items():
        place(src_root / "images" / f"{source}.jpg", images / f"{name}.jpg")
        place(src_root / "annotations" / "trimaps" / f"{source}.png", trimaps / f"{name}.png")
    for split in SPLITS:  # the official files as they are (their class/species/breed columns)
        shutil.copyfile(splits / f"{split}.txt", root / "annotations" / f"{split}.txt")
    lines = ["name\tsource"] + [f"{name}\t{source}" for name, source in pairs.items()]
    (root / "rehearsal-mapping.tsv").write_text("\n".join(lines) + "\n")
    same = sum(name == source for name, source in pairs.items())
    counts = {"pairs": len(pairs), "trainval": len(lists["trainval"]), "test": len(lists["test"]),
              "sources": len(set(pairs.values())), "own_pixels": same}  # fmt: skip
    (root / "REHEARSAL.md").write_text(_note(splits, src_root, counts, copy))
    return counts


def _note(splits: Path, pixels: Path, counts: dict[str, int], copy: bool) -> str:
    how = "copied" if copy else "symbolic links"
    return f"""# A rehearsal dataset, not data

Written by `petseg-bench rehearse`. It holds the official Oxford-IIIT Pet split lists
(`annotations/trainval.txt`, `annotations/test.txt`, from {splits}): {counts["trainval"]:,}
trainval and {counts["test"]:,} test names, {counts["pairs"]:,} pairs. The pixels are not theirs:
each name's image and trimap are {how} to a pair of {pixels}, which has
{counts["sources"]:,} pairs in use. The mapping, in `rehearsal-mapping.tsv` (name, source):

- a name that {pixels.name} holds gets its own pair ({counts["own_pixels"]:,} names);
- any other name gets the pairs of its breed (the name less its `_<number>`), in sorted order,
  in turn;
- a name of a breed that {pixels.name} lacks gets all its pairs, in sorted order, in turn.

So the sizes of the lists, folders and image counts are the full release's, but each picture
appears several times, in training and in test: use it to time and size petseg at full scale,
never to score a model.
"""


def parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("root", help="a new (or empty) folder for the rehearsal dataset")
    parser.add_argument(
        "--splits",
        default=str(CHECKOUT_SHARED / "oxford-pet-splits"),
        help="the official trainval.txt and test.txt (default: %(default)s)",
    )
    parser.add_argument(
        "--pixels",
        default=str(CHECKOUT_SHARED / "oxford-pet-large"),
        help="real pairs in the official layout (default: %(default)s)",
    )
    parser.add_argument("--copy", action="store_true", help="copy the files instead of linking")
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return parser  # fmt: skip


def main(argv: list[str] | None, prog: str = "petseg-bench rehearse") -> int:
    from petseg.console import run_command

    def body(argv: list[str] | None) -> int:
        args = parser(prog).parse_args(argv)
        counts = rehearse(Path(args.root), Path(args.splits), Path(args.pixels), args.copy)
        print(f"wrote a rehearsal dataset to {args.root}: {counts['trainval']:,} trainval + "
              f"{counts['test']:,} test names on {counts['sources']:,} real pairs of "
              f"{args.pixels} (see {args.root}/REHEARSAL.md)")  # fmt: skip
        return 0

    return run_command(prog, argv, body)


if __name__ == "__main__":
    sys.exit(main(None))

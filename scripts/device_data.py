"""Copy a dataset in the official layout with its longest side reduced, so that it travels.

The device tool sends at most 64 MiB with the checkout; the 30-breed set is 169 MB. Reduced to
320 px on the longest side (images box-filtered, JPEG quality 88; trimaps nearest-neighbour, so
their labels stay labels) it is 36 MB, and training at 256 px sees nearly the same pixels:

    python scripts/device_data.py ../shared/oxford-pet-large .carry/pets320 --side 320

Scores on the copy are at the reduced size, not the release's original resolution; the copy
says so in REDUCED.md.
"""

from __future__ import annotations

import argparse
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

LISTS = ("list.txt", "trainval.txt", "test.txt", "README")


def reduce_pair(image: Path, source: Path, target: Path, side: int) -> None:
    """Write ``image`` (RGB JPEG) and its trimap (nearest), the longest side at most ``side``."""
    with Image.open(image) as im:
        scale = min(1.0, side / max(im.size))
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        out = im.convert("RGB").resize(size, Image.Resampling.BOX)
    out.save(target / "images" / image.name, "JPEG", quality=88)
    trimap = source / "annotations" / "trimaps" / f"{image.stem}.png"
    if trimap.exists():
        with Image.open(trimap) as tri:
            tri.resize(size, Image.Resampling.NEAREST).save(
                target / "annotations" / "trimaps" / trimap.name
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a dataset in the official layout")
    parser.add_argument("target", type=Path, help="a new folder")
    parser.add_argument("--side", type=int, default=320, help="longest side in pixels")
    args = parser.parse_args(argv)
    if args.target.exists():
        parser.error(f"{args.target} exists; name a new folder")
    (args.target / "images").mkdir(parents=True)
    (args.target / "annotations" / "trimaps").mkdir(parents=True)
    for name in LISTS:
        if (args.source / "annotations" / name).exists():
            shutil.copy(args.source / "annotations" / name, args.target / "annotations" / name)
    images = sorted((args.source / "images").glob("*.jpg"))
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda p: reduce_pair(p, args.source, args.target, args.side), images))
    (args.target / "REDUCED.md").write_text(
        f"The Oxford-IIIT Pet Dataset (O. M. Parkhi, A. Vedaldi, A. Zisserman, C. V. Jawahar; "
        f"CC BY-SA 4.0): the {len(images)} pairs of {args.source.name} with the longest side "
        f"reduced to {args.side} px (images box-filtered, JPEG quality 88; trimaps "
        f"nearest-neighbour). Not the original resolution.\n"
    )
    print(f"wrote {len(images)} pairs to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

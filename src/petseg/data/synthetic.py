"""A small synthetic dataset in the official Oxford-IIIT Pet layout, for tests and offline use.

Each image is a saturated, lightly textured shape (ellipse or polygon, the "pet") on a grey
striped-and-noisy background. Its trimap marks the shape 1, a thin ring on its edge 3 and the rest
2, exactly as the official trimaps do, so the real reading code runs unchanged on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from petseg.files import folder_without


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.1, 0.4)
    stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    grey = 110 + 40 * stripes + rng.normal(0, 18, (h, w))
    return np.repeat(grey[..., None], 3, axis=2)


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    rx, ry = rng.uniform(0.15, 0.35) * w, rng.uniform(0.15, 0.35) * h
    if rng.random() < 0.5:
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
        radii = rng.uniform(0.6, 1.0, len(angles))
        points = [
            (cx + rx * r * np.cos(a), cy + ry * r * np.sin(a))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(points, fill=255)
    return mask


def make_sample(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its official-style trimap (1 pet, 2 background, 3 border)."""
    shape = _shape_mask(rng, h, w)
    inside = np.asarray(shape) > 0
    colour = rng.uniform(0, 255, 3)
    colour[rng.integers(3)] = rng.uniform(200, 255)  # saturated, unlike the grey background
    pet = colour + rng.normal(0, 12, (h, w, 3))
    image = np.where(inside[..., None], pet, _background(rng, h, w))
    image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    dilated = np.asarray(shape.filter(ImageFilter.MaxFilter(3))) > 0
    eroded = np.asarray(shape.filter(ImageFilter.MinFilter(3))) > 0
    trimap = np.full((h, w), 2, np.uint8)
    trimap[eroded] = 1
    trimap[dilated & ~eroded] = 3
    return image, Image.fromarray(trimap)


def make_synthetic_dataset(
    root: str | Path,
    n_trainval: int = 40,
    n_test: int = 20,
    size_range: tuple[int, int] = (80, 140),
    seed: int = 0,
) -> Path:
    """Write ``n_trainval + n_test`` synthetic samples under ``root`` in the official layout.

    Image sizes vary (each side drawn from ``size_range``) like the real data's. Returns ``root``.
    A ``root`` that already holds a split file or one of these images is refused (PetsegError):
    nothing of a user's dataset is replaced.
    """
    root = Path(root)
    names = [f"Synthetic_{i + 1}" for i in range(n_trainval + n_test)]
    split_files = [root / "annotations" / f"{split}.txt" for split in ("trainval", "test")]
    # a real data root, or an earlier synthetic one: never replace a user's files
    targets = split_files + [p for n in names for p in _sample_paths(root, n)]
    folder_without(root, targets, "a dataset", option="")
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        h, w = rng.integers(size_range[0], size_range[1] + 1, 2)
        image, trimap = make_sample(rng, int(h), int(w))
        image_path, trimap_path = _sample_paths(root, name)
        image.save(image_path, quality=95)
        trimap.save(trimap_path)
    lines = [f"{name} 1 1 1" for name in names]
    split_files[0].write_text("\n".join(lines[:n_trainval]) + "\n")
    split_files[1].write_text("\n".join(lines[n_trainval:]) + "\n")
    return root


def _sample_paths(root: Path, name: str) -> tuple[Path, Path]:
    return root / "images" / f"{name}.jpg", root / "annotations" / "trimaps" / f"{name}.png"


def parser():
    from jsonargparse.typing import NonNegativeInt, PositiveInt

    from petseg.console import command_parser

    parser = command_parser(
        "petseg-synth",
        "Write a small synthetic dataset in the Oxford-IIIT Pet layout (images/, "
        "annotations/trimaps/, annotations/trainval.txt and test.txt) into a new folder.",
    )
    parser.add_argument("root", help="A new folder to write into (created if missing).")
    parser.add_argument("--trainval", type=PositiveInt, default=40, help="Trainval images.")
    parser.add_argument("--test", type=PositiveInt, default=20, help="Test images.")
    parser.add_argument("--seed", type=NonNegativeInt, default=0, help="Random seed.")
    return parser


def _synth(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    root = make_synthetic_dataset(args.root, args.trainval, args.test, seed=args.seed)
    print(f"wrote {args.trainval + args.test} synthetic samples to {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``petseg-synth ROOT``: write a synthetic dataset in the official layout."""
    from petseg.console import run_command

    return run_command("petseg-synth", argv, _synth)


if __name__ == "__main__":
    raise SystemExit(main())

"""The learning curve: test Dice against the number of training images, fitted and projected.

    python -m petseg.bench.learning_curve points.csv --output docs/learning_curve.png \
        --project 3312

``points.csv`` has one row per training run: ``arch``, ``train_images``, ``seed``, ``test_dice``
(for example the mean per-image test Dice at original size from ``petseg-test --full-res``).
For each architecture the error ``1 - Dice`` is fitted as a power law of the number of images,
``error = a * n ** -b`` (a straight line in log-log, least squares over every run), the usual
form of data-scaling curves. The projection to ``--project`` images comes with an interval from
a bootstrap over the runs (resampled with replacement, 2,000 times): it is a projection of the
measured range, not a measurement, and the wider the extrapolation, the less it holds.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from petseg.errors import PetsegError

PROG = "petseg-bench learning-curve"
COLUMNS = ("arch", "train_images", "seed", "test_dice")


def read_points(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{arch: [(train_images, test_dice), ...]}`` from a points CSV."""
    try:
        with Path(path).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise PetsegError(f"cannot read {path}: {err.strerror or err}") from None
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise PetsegError(f"{path} needs the columns {', '.join(COLUMNS)} and one row per run")
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        points[row["arch"]].append((int(row["train_images"]), float(row["test_dice"])))
    return dict(points)


def fit_power_law(points: list[tuple[int, float]]) -> tuple[float, float]:
    """``(a, b)`` of ``1 - dice = a * n ** -b``, least squares in log-log."""
    n = np.log([p[0] for p in points])
    err = np.log([max(1e-6, 1 - p[1]) for p in points])
    slope, intercept = np.polyfit(n, err, 1)
    return float(math.exp(intercept)), float(-slope)


def project(
    points: list[tuple[int, float]], n: int, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The fitted Dice at ``n`` images and its 90 % bootstrap interval over the runs."""
    a, b = fit_power_law(points)
    rng = np.random.default_rng(seed)
    values = []
    sizes = {p[0] for p in points}
    for _ in range(draws):
        sample = [points[i] for i in rng.integers(0, len(points), len(points))]
        if len({p[0] for p in sample}) < 2:  # a line needs two sizes
            continue
        sa, sb = fit_power_law(sample)
        values.append(1 - sa * n**-sb)
    if len(points) < 3 or not values:  # two runs fix the line: no spread to resample
        low, high = float("nan"), float("nan")
    else:
        low, high = np.percentile(values, [5, 95])
    return {
        "a": a,
        "b": b,
        "images": n,
        "dice": 1 - a * n**-b,
        "dice_low": float(low),
        "dice_high": float(high),
        "sizes_measured": len(sizes),
        "runs": len(points),
    }


def plot(
    points: dict[str, list[tuple[int, float]]], output: str | Path, n: int, title: str = ""
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (arch, runs), colour in zip(sorted(points.items()), ("C0", "C1", "C2", "C3"), strict=False):
        xs, ys = [p[0] for p in runs], [p[1] for p in runs]
        ax.scatter(xs, ys, color=colour, s=18, label=f"{arch} (runs)")
        a, b = fit_power_law(runs)
        grid = np.geomspace(min(xs), n, 100)
        measured = grid <= max(xs)
        ax.plot(grid[measured], 1 - a * grid[measured] ** -b, color=colour)
        ax.plot(grid[~measured], 1 - a * grid[~measured] ** -b, color=colour, linestyle=":")
        p = project(runs, n)
        if math.isnan(p["dice_low"]):
            ax.scatter([n], [p["dice"]], color=colour, facecolor="white", label=f"{arch} "
                       f"projected to {n} (no interval: {len(runs)} runs)")  # fmt: skip
            continue
        ax.errorbar([n], [p["dice"]], yerr=[[p["dice"] - p["dice_low"]],
                    [p["dice_high"] - p["dice"]]], color=colour, marker="o", mfc="white",
                    capsize=3, label=f"{arch} projected to {n} (90 % bootstrap)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test Dice (mean per image)")
    heading = "Learning curve: 1 - Dice = a n^-b, dotted = projection"
    ax.set_title(f"{heading}\n{title}" if title else heading, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    output = Path(output)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    """Fit and plot a learning curve; print each architecture's fit and projection."""
    from petseg.console import run_command

    def body(args_list: list[str] | None) -> int:
        parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
        parser.add_argument("points", help="CSV: arch, train_images, seed, test_dice")
        parser.add_argument("--output", default="learning_curve.png", help="the PNG")
        parser.add_argument("--project", type=int, default=3312, help="images to project to")
        parser.add_argument("--title", default="", help="a second title line (the setting)")
        parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
        args = parser.parse_args(args_list)
        points = read_points(args.points)
        for arch, runs in sorted(points.items()):
            p = project(runs, args.project)
            interval = (
                f"90 % bootstrap {p['dice_low']:.3f}-{p['dice_high']:.3f}"
                if not math.isnan(p["dice_low"])
                else "no interval: fewer than 3 runs"
            )
            print(
                f"{arch}: 1 - dice = {p['a']:.3f} n^-{p['b']:.3f} over {p['runs']} runs at "
                f"{p['sizes_measured']} sizes; projected to {args.project} images: "
                f"{p['dice']:.3f} ({interval})"
            )
        print(f"wrote {plot(points, args.output, args.project, args.title)}")
        return 0

    return run_command(PROG, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())

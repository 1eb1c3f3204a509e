"""Validation Dice against wall-clock seconds: petseg runs beside peer runs, in one PNG.

    python -m petseg.bench.curves --run logs/resnet34_unet/version_0 --peer peer.json \
        --output docs/recipe_curves.png

A petseg run's seconds are those of its TensorBoard events, counted from the run's first event
(written when the logger starts, before the data is set up); a peer run's are those of the
``history`` in its JSON (``petseg.bench.peer``), counted from the script's start. Neither counts
the Python imports.
"""

from __future__ import annotations

import json
from pathlib import Path

from petseg.errors import PetsegError
from petseg.files import new_file
from petseg.tensorboard import event_files, timed_scalars

PROG = "python -m petseg.bench.curves"


def petseg_curve(run_dir: str | Path) -> list[tuple[float, float]]:
    """``[(seconds since the run's first event, val/dice), ...]`` of one run folder."""
    if not event_files(run_dir):
        raise PetsegError(f"no TensorBoard event files under {run_dir}")
    return timed_scalars(run_dir, "val/dice")


def peer_curve(path: str | Path) -> list[tuple[float, float]]:
    """``[(seconds since the start, validation Dice), ...]`` of a peer run's JSON."""
    try:
        history = json.loads(Path(path).read_text())["history"]
    except (OSError, ValueError, KeyError) as err:
        raise PetsegError(f"{path} is not a peer run's JSON (petseg.bench.peer --output)") from err
    return [(float(t), float(d)) for t, d in history]


def plot(curves: dict[str, list[tuple[float, float]]], output: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in curves.items():
        ax.plot([t for t, _ in points], [d for _, d in points], marker=".", label=label)
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("validation Dice (mean per image)")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    from petseg.console import command_parser, run_command

    def body(argv: list[str] | None) -> int:
        parser = command_parser(PROG, "Validation Dice against wall-clock seconds, one PNG.")
        parser.add_argument("--run", nargs="*", default=[], help="petseg log folders (version_N).")
        parser.add_argument("--peer", nargs="*", default=[], help="peer JSON files.")
        parser.add_argument("--labels", nargs="*", help="Legend labels, runs first, then peers.")
        parser.add_argument("--output", required=True, help="The PNG to write (never replaced).")
        args = parser.parse_args(argv)
        new_file(args.output)
        sources = [(f"petseg {Path(r).parent.name}", r, petseg_curve) for r in args.run]
        sources += [(f"peer {Path(p).stem}", p, peer_curve) for p in args.peer]
        if not sources:
            raise PetsegError("nothing to plot: pass --run and/or --peer")
        labels = args.labels or [label for label, _, _ in sources]
        if len(labels) != len(sources):
            raise PetsegError(f"--labels gives {len(labels)} labels for {len(sources)} curves")
        curves = {label: read(path) for label, (_, path, read) in zip(labels, sources, strict=True)}
        print(f"wrote {plot(curves, args.output)}")
        return 0

    return run_command(PROG, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())

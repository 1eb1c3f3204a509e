"""petseg-compare: per-epoch train/valid curves of several runs on shared axes, and a table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from petseg.errors import PetsegError
from petseg.tensorboard import epoch_curves, read_hparams


@dataclass
class LoggedRun:
    """One training run read back from its TensorBoard folder."""

    label: str
    path: Path
    curves: dict[str, list[tuple[int, float]]]
    hparams: dict = field(default_factory=dict)  # settings and summary numbers (HParams tab)

    def best_val(self) -> tuple[float, int] | None:
        points = self.curves.get("val/dice", [])
        if not points:
            return None
        epoch, value = max(points, key=lambda p: p[1])
        return value, epoch

    def last(self, tag: str) -> float | None:
        points = self.curves.get(tag, [])
        return points[-1][1] if points else None

    def test_score(self, name: str) -> float | None:
        """The best checkpoint's test score (``dice``, ``iou``) from the HParams, or from the
        one-point ``test/<name>`` scalar that older runs logged."""
        value = self.hparams.get(f"best_test_{name}")
        return float(value) if isinstance(value, (int, float)) else self.last(f"test/{name}")


def _has_events(folder: Path) -> bool:
    return any(folder.glob("events.out.tfevents.*"))


def _version(folder: Path) -> tuple[int, float]:
    match = re.search(r"(\d+)$", folder.name)
    return (int(match.group(1)) if match else -1, folder.stat().st_mtime)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders from paths that are run folders, or folders of runs such as ``logs/`` or
    ``logs/unet`` (there, the newest ``version_N`` under each parent folder)."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise PetsegError(f"no such log folder: {path} (petseg-train writes logs/<arch>/)")
        if _has_events(path):
            runs.append(path)
            continue
        newest: dict[Path, Path] = {}
        for events in sorted(path.rglob("events.out.tfevents.*")):
            run = events.parent
            if run.parent not in newest or _version(run) > _version(newest[run.parent]):
                newest[run.parent] = run
        if not newest:
            raise PetsegError(f"no TensorBoard event files under {path}")
        runs += sorted(newest.values())
    return runs


def load_runs(paths: list[Path]) -> list[LoggedRun]:
    """Read each run; labels are the run folders' paths below their common root."""
    paths = [p.resolve() for p in paths]
    common = Path(*_common_parts(paths)) if len(paths) > 1 else paths[0].parent
    return [
        LoggedRun(str(p.relative_to(common)) or p.name, p, epoch_curves(p), read_hparams(p))
        for p in paths
    ]


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    parts = [p.parts for p in paths]
    common = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return tuple(common)


def markdown_table(runs: list[LoggedRun]) -> str:
    """Best validation Dice (and its epoch), final values and test Dice where logged."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [
        "| run | epochs | best val Dice | at epoch | final train Dice | test Dice | test IoU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        best = run.best_val()
        epochs = len(run.curves.get("val/dice", []))
        lines.append(
            f"| {run.label} | {epochs} | {fmt(best and best[0])} | {best[1] if best else '-'} "
            f"| {fmt(run.last('train/dice'))} | {fmt(run.test_score('dice'))} "
            f"| {fmt(run.test_score('iou'))} |"
        )
    return "\n".join(lines) + "\n"


def plot_runs(runs: list[LoggedRun], output: Path, title: str = "") -> Path:
    """One PNG: Dice and loss per epoch, train dashed and valid solid, a colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for run, colour in zip(runs, colours * (len(runs) // len(colours) + 1), strict=False):
        for ax, metric in zip(axes, ("dice", "loss"), strict=True):
            for stage, style in (("train", "--"), ("val", "-")):
                points = run.curves.get(f"{stage}/{metric}", [])
                if points:
                    epochs, values = zip(*points, strict=True)
                    label = f"{run.label} {'valid' if stage == 'val' else 'train'}"
                    ax.plot(epochs, values, style, color=colour, label=label, linewidth=1.6)
    for ax, metric in zip(axes, ("Dice (mean per image)", "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output

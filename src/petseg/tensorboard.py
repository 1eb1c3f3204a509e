"""Reading petseg's TensorBoard event files back with tensorboard's own reader."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

Curves = dict[str, list[tuple[int, float]]]
EPOCH_TAG = "train/epoch"  # the epoch at each step: Lightning's `epoch`, in the train group


def event_files(run_dir: str | Path) -> list[Path]:
    """A run's event files, oldest first (a resumed run adds one per resume)."""
    files = Path(run_dir).glob("events.out.tfevents.*")
    return sorted(files, key=lambda p: (_timestamp(p), p.name))


def _timestamp(events: Path) -> int:
    """The creation time in ``events.out.tfevents.<time>.<host>...`` (0 if there is none)."""
    match = re.match(r"events\.out\.tfevents\.(\d+)", events.name)
    return int(match.group(1)) if match else 0


def _read(events: Path) -> EventAccumulator | None:
    """One event file, every scalar kept; an unreadable file gives a warning that names it."""
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep every value
    acc.Reload()
    if acc.file_version is None and events.stat().st_size > 0:
        warnings.warn(f"skipped {events}: not a readable TensorBoard event file", stacklevel=3)
        return None
    return acc


def read_scalars(events: Path) -> Curves:
    """All scalars of one event file, ``{tag: [(step, value), ...]}``; an unreadable file is
    skipped with a warning that names it."""
    acc = _read(events)
    if acc is None:
        return {}
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def timed_scalars(run_dir: str | Path, tag: str) -> list[tuple[float, float]]:
    """``[(seconds since the run's first event, value), ...]`` of ``tag``, over all of a run's
    event files (a resumed run's seconds include the time it lay interrupted)."""
    points: list[tuple[float, float]] = []
    start = None
    for events in event_files(run_dir):
        acc = _read(events)
        if acc is None:
            continue
        start = acc.FirstEventTimestamp() if start is None else start
        if tag in acc.Tags()["scalars"]:
            points += [(e.wall_time - start, e.value) for e in acc.Scalars(tag)]
    return points


def epoch_curves(run_dir: str | Path) -> Curves:
    """Per-epoch scalars of a run: ``{tag: [(epoch, value), ...]}``, sorted by epoch.

    Lightning logs epoch-level metrics at the global step where the epoch ended, together with
    an epoch scalar (``EPOCH_TAG``) at that step; this maps each value to its epoch through
    that scalar. A resumed run's later files replace what an interrupted run logged for the
    same epoch, so the curves are those of one continuous run.
    """
    merged: dict[str, dict[int, float]] = {}
    for events in event_files(run_dir):
        scalars = read_scalars(events)
        epochs = scalars.pop(EPOCH_TAG, []) + scalars.pop("epoch", [])  # older runs: `epoch`
        step_to_epoch = {step: int(value) for step, value in epochs}
        for tag, points in scalars.items():
            for step, value in points:
                if step in step_to_epoch:
                    merged.setdefault(tag, {})[step_to_epoch[step]] = value
    return {tag: sorted(values.items()) for tag, values in merged.items()}


def read_hparams(run_dir: str | Path) -> dict[str, float | str | bool]:
    """The HParams of a run (its settings and summary numbers, ``{"arch": "unet",
    "test/dice": 0.91, ...}``) as the HParams tab shows them; where a run wrote several (a
    resumed run), the latest value of each wins."""
    from tensorboard.plugins.hparams import metadata

    values: dict[str, float | str | bool] = {}
    for events in event_files(run_dir):
        acc = _read(events)
        if acc is None:
            continue
        try:
            content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        except KeyError:  # no HParams in this file
            continue
        if metadata.SESSION_START_INFO_TAG not in content:
            continue
        info = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        for name, value in info.hparams.items():
            kind = value.WhichOneof("kind")
            values[name] = getattr(value, kind) if kind else None
    return values

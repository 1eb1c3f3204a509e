"""Reading petseg's TensorBoard event files back with tensorboard's own reader."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalars of one run folder (every event file in it): ``{tag: [(step, value), ...]}``."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep every value
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def epoch_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch scalars of a run: ``{tag: [(epoch, value), ...]}``.

    Lightning logs epoch-level metrics at the global step where the epoch ended, together with
    an ``epoch`` scalar at that step; this maps each value to its epoch through that scalar.
    """
    scalars = read_scalars(run_dir)
    step_to_epoch = {step: int(value) for step, value in scalars.pop("epoch", [])}
    return {
        tag: [(step_to_epoch[step], value) for step, value in points if step in step_to_epoch]
        for tag, points in scalars.items()
    }

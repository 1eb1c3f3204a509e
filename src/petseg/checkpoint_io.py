"""How ``petseg-train`` writes and reads Lightning checkpoints: ``RunCheckpointIO``.

Writing: every checkpoint goes through ``petseg.checkpoints.atomic_save`` (a temporary file in
the run folder, synced, then renamed), so a kill or a full disk never leaves a truncated file
under a checkpoint's name nor destroys the previous ``last.ckpt``. Lightning's own writer stages
the file in ``$TMPDIR`` and moves it, which is a copy over the old file when ``$TMPDIR`` is on
another file system.

Reading, to resume: the state of the ``ModelCheckpoint`` callbacks in a checkpoint names files
(the best and last checkpoints, the top-k, their folder) that Lightning later deletes as stale.
A checkpoint is plain values, so it passes ``weights_only=True`` and may still be crafted or
carried from elsewhere: only names of ``.ckpt`` files directly inside this run's checkpoint
folder are kept (no ``..``, no links, no other folder); the others are dropped, and one line says
which.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.plugins.io import TorchCheckpointIO

from petseg.checkpoints import atomic_save

# The entries of a ModelCheckpoint state that name files.
_PATH_FIELDS = ("best_model_path", "last_model_path", "kth_best_model_path")
_NUMBER_FIELDS = ("best_model_score", "kth_value")


class RunCheckpointIO(TorchCheckpointIO):
    """Atomic checkpoint writes; resumed callback state that names files only inside ``run_dir``.

    Args:
        run_dir: The run's checkpoint folder (``<save_dir>/<arch>/version_N``).
        report: Where the one line about ignored paths goes (stderr by default).
    """

    def __init__(self, run_dir: str | Path, report: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        kwargs = {} if map_location is None else {"map_location": map_location}
        checkpoint = super().load_checkpoint(path, weights_only=weights_only, **kwargs)
        ignored = sanitise_callback_paths(checkpoint, self.run_dir)
        if ignored and rank_zero_only.rank == 0:
            shown = ", ".join(repr(p) for p in ignored[:3])
            more = f" and {len(ignored) - 3} more" if len(ignored) > 3 else ""
            self.report(
                f"petseg-train: warning: ignored {len(ignored)} path(s) in {path} that lie "
                f"outside the run folder {self.run_dir}: {shown}{more}"
            )
        return checkpoint


def is_run_file(path: Any, run_dir: Path) -> bool:
    """Whether ``path`` names a ``.ckpt`` directly in ``run_dir``: absolute, without ``..``,
    in that folder once links are resolved, and not itself a link."""
    if not isinstance(path, str) or not path or "\0" in path:
        return False
    candidate = Path(path)
    if not candidate.is_absolute() or ".." in candidate.parts or candidate.suffix != ".ckpt":
        return False
    if os.path.realpath(candidate.parent) != os.path.realpath(run_dir):
        return False
    return not candidate.is_symlink()


def sanitise_callback_paths(checkpoint: dict[str, Any], run_dir: str | Path) -> list[str]:
    """Drop, in place, every file name in the checkpoint callbacks' state that is not a run file
    (``is_run_file``), and state that is not of the right types; return what was dropped."""
    run_dir = Path(run_dir)
    states = checkpoint.get("callbacks")
    if not isinstance(states, dict):
        checkpoint.pop("callbacks", None)
        return []
    ignored: list[str] = []
    for key in list(states):
        state = states[key]
        names_files = isinstance(state, dict) and any(
            name in state for name in (*_PATH_FIELDS, "best_k_models", "dirpath")
        )
        if not (names_files or str(key).startswith("ModelCheckpoint")):
            continue
        if not isinstance(state, dict) or not _plain_numbers(state):
            del states[key]  # not a state Lightning could restore: start this callback afresh
            ignored.append(f"{key}: malformed state")
            continue
        state.setdefault("best_model_path", "")
        state.setdefault("best_model_score", None)
        for name in _PATH_FIELDS:
            value = state.get(name, "")
            if value != "" and not is_run_file(value, run_dir):
                ignored.append(str(value))
                state[name] = ""
        if state.get("best_model_path", "") == "":
            state["best_model_score"] = None  # a score without its file means nothing
        best_k = state.get("best_k_models", {})
        kept = {}
        if isinstance(best_k, dict):
            for path, score in best_k.items():
                if is_run_file(path, run_dir) and _is_number(score):
                    kept[path] = score
                else:
                    ignored.append(str(path))
        state["best_k_models"] = kept
        if "dirpath" in state and not (
            isinstance(state["dirpath"], str)
            and os.path.realpath(state["dirpath"]) == os.path.realpath(run_dir)
        ):
            ignored.append(str(state["dirpath"]))
            # Lightning restores the best-k only for the same folder
            state["dirpath"] = os.path.realpath(run_dir)
            state["best_k_models"], state["kth_best_model_path"] = {}, ""
    return ignored


def _is_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.dtype.is_floating_point
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain_numbers(state: dict[str, Any]) -> bool:
    return all(state.get(name) is None or _is_number(state[name]) for name in _NUMBER_FIELDS)

"""Defaults shared by the DataModule and the commands that do not train (no heavy imports)."""

from __future__ import annotations

import os

DEFAULT_ROOT = "dataset/oxford-iiit-pet"


def default_workers(num_workers: int | None) -> int:
    """``num_workers``, or ``min(8, CPU count)`` when it is ``None``."""
    return min(8, os.cpu_count() or 1) if num_workers is None else num_workers

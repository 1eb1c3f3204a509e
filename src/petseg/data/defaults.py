"""Defaults shared by the DataModule and the commands that do not train (no heavy imports)."""

from __future__ import annotations

import os

DEFAULT_ROOT = "dataset/oxford-iiit-pet"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as ``taskset`` sets it), not the
    machine's count; the machine's count where the system cannot say."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def default_workers(num_workers: int | None) -> int:
    """``num_workers``, or ``min(8, usable CPUs)`` when it is ``None``: a process pinned to one
    core gets one worker, as PyTorch's DataLoader suggests, not the machine's count."""
    return min(8, usable_cpus()) if num_workers is None else num_workers

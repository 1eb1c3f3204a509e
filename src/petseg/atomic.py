"""Writing a file so that a reader only ever sees the earlier file or the whole new one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

TEMPORARY_MARK = ".petseg-tmp"  # in the name of every temporary file petseg writes


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` for a hidden temporary file beside ``path``, then rename it over
    ``path`` in one step; the temporary file is removed on any error.

    The temporary name keeps ``path``'s suffix, for writers that pick the format from it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem[:40]}.{secrets.token_hex(4)}{TEMPORARY_MARK}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path

"""Writing outputs: never over a user's earlier results, and never half a file.

Every command that writes takes its paths through these checks before any work starts, so a
refusal costs nothing and leaves everything as it was:

- ``new_file``: a file that must not exist yet (``--output model.onnx``, a plot, a JSON);
- ``folder_without``: a folder that may exist but must not hold any of the names to be written
  (a test report, predicted masks, a synthetic dataset);
- ``empty_folder``: a folder that must be new or empty (a rehearsal dataset, a work folder);
- ``writable_folder``: a folder that is made if needed and proven to take files;
- ``free_name``: ``path`` or the first free ``<stem>-N<suffix>`` beside it, for a file that is
  added to a folder again and again (``index.csv``).

``atomic_write`` then writes each file under a temporary name and renames it into place, so a
reader (or a crash) sees the earlier file or the whole new one; with ``durable`` (checkpoints,
``.pth`` files) it also syncs them to disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from petseg.errors import PetsegError

TEMPORARY_MARK = ".petseg-tmp"  # in the name of every temporary file petseg writes
# The errors that mean "this folder takes no more bytes", with the words that say so.
DISK_ERRORS = {
    errno.ENOSPC: "is full",
    errno.EDQUOT: "is over its disk quota",
    errno.EROFS: "is on a read-only file system",
}


def new_file(path: str | Path, option: str = "--output") -> Path:
    """``path`` as a file to create; refuses a folder or an existing file (one line naming it)."""
    path = Path(path)
    label = f"{option} {path}".strip()
    if path.is_dir():
        raise PetsegError(f"{label} is a folder; pass a new file name")
    if path.exists():
        raise PetsegError(
            f"{label} already exists; pass a new file name so the earlier one is kept"
        )
    return path


def folder_without(
    folder: str | Path, names: Iterable[str | Path], what: str, option: str = "--output"
) -> Path:
    """``folder`` for new files ``names`` (relative to it); refuses a file, or a folder that
    already holds any of them (``what`` says what they are, e.g. "a report")."""
    folder = Path(folder)
    label = f"{option} {folder}".strip()
    if folder.exists() and not folder.is_dir():
        raise PetsegError(f"{label} is a file, not a folder; pass a folder")
    taken = [folder / name for name in names if (folder / name).exists()]
    if taken:
        raise PetsegError(
            f"{label} already holds {what} ({len(taken)} file(s), e.g. {taken[0]}); "
            "pass a new folder so the earlier ones are kept"
        )
    return folder


def empty_folder(folder: str | Path, option: str = "--output") -> Path:
    """``folder`` when it does not exist or is empty; otherwise one line naming it."""
    folder = Path(folder)
    label = f"{option} {folder}".strip()
    if folder.exists() and not folder.is_dir():
        raise PetsegError(f"{label} is a file, not a folder; pass a new folder")
    if folder.exists() and any(folder.iterdir()):
        raise PetsegError(f"{label} is not empty; pass a new folder")
    return folder


def writable_folder(path: str | Path, option: str) -> Path:
    """Create ``path`` if needed and prove it takes files, or fail in one line naming ``option``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PetsegError(f"{option} {path} is a file, not a folder; pass a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".petseg-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise PetsegError(
            f"{option} {path} is not a writable folder ({err.strerror or err}); pass another"
        ) from None
    return path


def free_name(path: str | Path) -> Path:
    """``path``, or ``<stem>-N<suffix>`` beside it with the first N that is free."""
    path = Path(path)
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def atomic_write(path: str | Path, write: Callable[[Path], object], durable: bool = False) -> Path:
    """``write(temporary)`` for a hidden temporary file beside ``path`` (never in ``$TMPDIR``,
    which may be another file system, where a rename is a copy), then rename it over ``path`` in
    one step: at any moment ``path`` is the earlier file or the complete new one.

    The temporary name keeps ``path``'s suffix, for writers that pick the format from it, and
    holds this process's id, so that ``remove_stale_temporaries`` knows a killed writer's. It is
    removed on any error. ``durable`` also syncs the file and the folder to disk before and after
    the rename (checkpoints: a power cut keeps one whole file). A full or read-only file system
    is one line naming the folder.
    """
    path = Path(path)
    folder = path.parent
    unique = f"{os.getpid()}.{secrets.token_hex(4)}"
    tmp = folder / f".{path.stem[:40]}.{unique}{TEMPORARY_MARK}{path.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if durable:  # a full disk can surface only here (delayed allocation): inside the try
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in DISK_ERRORS:
            raise PetsegError(
                f"cannot write {path.name}: the folder {folder} {DISK_ERRORS[err.errno]} "
                f"({err.strerror}); free space there or write elsewhere (nothing was replaced)"
            ) from None
        raise
    if durable:
        _sync_folder(folder)  # the rename itself survives a power cut
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed ``atomic_write`` calls left in ``folder`` (those
    whose process is gone); the removed paths."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
        pid = tmp.name.split(TEMPORARY_MARK)[0].split(".")[-2]
        if pid.isdigit() and not _alive(int(pid)) and tmp.is_file() and not tmp.is_symlink():
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this process is from a write that ended
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """fsync a folder's entries (not every platform opens or syncs folders: then nothing)."""
    with contextlib.suppress(OSError):
        _fsync(folder)

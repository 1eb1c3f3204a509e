"""Run folders: a run owns ``<save_dir>/<arch>/version_N/`` and ``<log_dir>/<arch>/version_N/``.

Outputs are append-only: a new run takes the next free N, created atomically (``os.mkdir`` fails
if another run took it first, and the loser tries the next number), so re-running a command or
starting two runs at once never replaces an earlier run's checkpoints, weights or curves. A
resumed run keeps its N and goes on writing into the same two folders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from petseg.errors import PetsegError

_VERSION = re.compile(r"^version_(\d+)$")
LAST = "last.ckpt"  # rewritten after every epoch; --ckpt_path last resumes the newest run's
BEST = "best.ckpt"  # the best validation Dice so far, under a name that does not change
DEFAULT_SAVE_DIR = "saved_models"


@dataclass(frozen=True)
class Run:
    """The two folders of one training run."""

    version: int
    ckpt_dir: Path  # <save_dir>/<arch>/version_N: checkpoints, the .pth, the test report
    log_dir: Path  # <log_dir>/<arch>/version_N: TensorBoard events and the run's config


def run_version(folder: Path) -> int | None:
    """N for a folder named ``version_N``, else None."""
    match = _VERSION.match(folder.name)
    return int(match.group(1)) if match else None


def _versions(parent: Path) -> list[int]:
    if not parent.is_dir():
        return []
    return [v for v in map(run_version, parent.iterdir()) if v is not None]


def _run(save_dir: str | Path, log_dir: str | Path, arch: str, version: int) -> Run:
    name = f"version_{version}"
    return Run(version, Path(save_dir) / arch / name, Path(log_dir) / arch / name)


def new_run(save_dir: str | Path, log_dir: str | Path, arch: str) -> Run:
    """Claim the next free ``version_N`` under both folders (atomically) and return it."""
    ckpt_parent, log_parent = Path(save_dir) / arch, Path(log_dir) / arch
    ckpt_parent.mkdir(parents=True, exist_ok=True)
    version = max(_versions(ckpt_parent) + _versions(log_parent), default=-1) + 1
    while True:
        try:
            (ckpt_parent / f"version_{version}").mkdir()  # atomic: exactly one run gets it
        except FileExistsError:
            version += 1
            continue
        if (log_parent / f"version_{version}").exists():  # logs from elsewhere took this N
            version += 1
            continue
        return _run(save_dir, log_dir, arch, version)


def discard_if_unused(run: Run) -> bool:
    """Remove a new run's two folders if it wrote nothing worth keeping, and say so.

    Nothing worth keeping: no file in its checkpoint folder, and no scalar in its TensorBoard
    events (only the run's config and empty event files), as when the data or the model fails
    before the first training step. A run that trained and logged anything keeps its folders.
    """
    import shutil

    from petseg.tensorboard import event_files, read_scalars

    if run.ckpt_dir.is_dir() and any(run.ckpt_dir.iterdir()):
        return False
    if run.log_dir.is_dir():
        if any(read_scalars(events) for events in event_files(run.log_dir)):
            return False
        shutil.rmtree(run.log_dir)
    if run.ckpt_dir.is_dir():
        run.ckpt_dir.rmdir()
    return True


def existing_run(save_dir: str | Path, log_dir: str | Path, arch: str, version: int) -> Run:
    """The folders of run ``version`` (for a resumed run, or a DDP process other than rank 0)."""
    return _run(save_dir, log_dir, arch, version)


def newest_checkpoint(save_dir: str | Path, arch: str) -> Path:
    """``last.ckpt`` of the newest run of ``arch`` that has one (for ``--ckpt_path last``)."""
    parent = Path(save_dir) / arch
    runs = sorted((v, parent / f"version_{v}" / LAST) for v in _versions(parent))
    with_last = [path for _, path in runs if path.is_file()]
    if not with_last:
        raise PetsegError(
            f"--ckpt_path last: no {arch} run under {parent} has a {LAST} to resume; "
            "start a new run without --ckpt_path, or pass a checkpoint's path"
        )
    return with_last[-1]


def run_of_checkpoint(ckpt_path: str | Path, save_dir: str | Path, arch: str) -> int | None:
    """N when ``ckpt_path`` lies in ``<save_dir>/<arch>/version_N/`` (its run is continued)."""
    folder = Path(ckpt_path).resolve().parent
    if folder.parent != (Path(save_dir) / arch).resolve():
        return None
    return run_version(folder)


def replace_with_link(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` the same file as ``source``, atomically: a hard link (no extra disk) or,
    where the file system has none, a copy, made under a temporary name and renamed over
    ``target``, so a reader sees the old file or the new one, never a part or a dangling link."""
    import shutil

    from petseg.files import atomic_write

    def link_or_copy(temporary: Path) -> None:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)

    return atomic_write(target, link_or_copy)


def resolve_checkpoint(
    path: str | Path, save_dir: str | Path = DEFAULT_SAVE_DIR, arch: str | None = None
) -> tuple[Path, str]:
    """The checkpoint a command means by ``path``, and why, in words ("" when taken as given).

    ``best.ckpt`` or ``last.ckpt`` alone, where the working directory holds no such file, means
    that file of the newest run under ``<save_dir>/<arch>/version_N/`` (any architecture when
    ``arch`` is None): the one written last. Any other path is taken as it is.
    """
    given = Path(path)
    if given.exists() or str(path) not in (BEST, LAST):
        return given, ""
    pattern = f"{arch or '*'}/version_*/{given.name}"
    found = [f for f in Path(save_dir).glob(pattern) if run_version(f.parent) is not None]
    found = [f for f in found if f.is_file()]
    where = Path(save_dir) / arch if arch else Path(save_dir)
    if not found:
        raise PetsegError(
            f"checkpoint not found: {path} is not in the working directory and no run under "
            f"{where} has one; pass the path petseg-train printed, or --save_dir (and --arch) "
            "of the runs"
        )
    newest = max(found, key=lambda f: (f.stat().st_mtime, run_version(f.parent)))
    return newest, f"{path} is not in the working directory: the newest run's under {where}"

"""Stopping a training run with SIGINT (Ctrl+C) or SIGTERM (``kill``, a scheduler's end of job).

During the training epochs the first signal is obeyed at the next step boundary:
``TrainingInterrupted`` is raised there, with ``last.ckpt`` as of the last finished epoch (so
that the resumed run repeats the uninterrupted one exactly), or written at that step when no
epoch has finished yet (written atomically: a previous file survives until the new one is
whole). A second signal, or one before training starts or after it
ends, raises at once. ``petseg-train`` prints one line saying how to resume and exits with
128 + the signal's number; nothing claims success.

Lightning's own handling is replaced while the guard is active: it turns Ctrl+C into
``sys.exit(1)`` without a checkpoint, and SIGTERM into a ``SystemExit`` whose status is 0.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(BaseException):
    """Training stopped by a signal.

    Not an ``Exception``: nothing on the way up may treat it as an error to recover from.

    Attributes:
        signum: The signal's number.
        last: The checkpoint to resume from, or None when none was written.
        where: When it came (``at epoch 3, step 120``, ``before training started``).
    """

    def __init__(self, signum: int, last: Path | None, where: str) -> None:
        self.signum, self.last, self.where = signum, last, where
        super().__init__(f"interrupted by {signal.Signals(signum).name} {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self, prog: str) -> str:
        """The one line that says what happened and how to go on."""
        head = f"{prog}: interrupted by {signal.Signals(self.signum).name} {self.where}"
        if self.last is None:
            return f"{head}; no checkpoint was written, so there is nothing to resume"
        return (
            f"{head}; {self.last} holds the run so far: resume with the same options and "
            f"--ckpt_path {self.last}"
        )


class SignalGuard(Callback):
    """Turns SIGINT and SIGTERM into ``TrainingInterrupted``, with a resumable ``last.ckpt``.

    Use it as a context manager around the whole run (setup, fit, test) and as a callback of
    the Trainer (so that it can write the checkpoint at a step boundary).

    Args:
        last: Where the checkpoint goes (the run's ``last.ckpt``).
    """

    def __init__(self, last: Path) -> None:
        self.last = Path(last)
        self.received: list[int] = []
        self.armed = False  # within the training epochs: obey at the next step boundary
        self._previous: dict[int, Any] = {}
        self._where = "before training started"

    def __enter__(self) -> SignalGuard:
        if _main_thread():  # only the main thread receives signals (and may set handlers)
            self._previous = {s: signal.getsignal(s) for s in SIGNALS}
            self._install()
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _install(self) -> None:
        if self._previous:
            for signum in SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if not self.armed or len(self.received) > 1:
            self.armed = False
            raise TrainingInterrupted(signum, self._resumable(), self._where)

    def _resumable(self) -> Path | None:
        return self.last if self.last.is_file() else None

    # The Trainer registers its own SIGTERM handler when fit starts; this takes over again.
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            # Several processes: a checkpoint at a step boundary is a collective that one
            # process alone must not start, so every process stops at once (Lightning passes
            # SIGTERM on to the others) and the last finished epoch's last.ckpt stays.
            return
        self._install()
        self.armed = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.armed = False
        self._where = "after training, while finishing the run"

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._where = f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
        # Mid-epoch, the last epoch's last.ckpt is kept when there is one: resuming from it
        # repeats exactly what an uninterrupted run does (the data order of an epoch cannot be
        # resumed halfway); without one, a mid-epoch checkpoint beats losing the work.
        self._stop_if_asked(trainer, save=not self.last.is_file())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._where = f"at the end of epoch {trainer.current_epoch}"
        self._stop_if_asked(trainer, save=True)

    def _stop_if_asked(self, trainer: L.Trainer, save: bool) -> None:
        if not self.received or not self.armed:
            return
        self.armed = False  # a signal during the save below stops at once
        if save:
            trainer.save_checkpoint(self.last)
        raise TrainingInterrupted(self.received[0], self.last, self._where)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

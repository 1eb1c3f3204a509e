"""``petseg-train``: the command line of ``petseg.training.train``."""

from __future__ import annotations

import functools

from petseg.console import run_command, verbose_requested


def _train(argv: list[str] | None, verbosity: dict[str, bool]) -> int:
    from petseg.training import train

    train(argv, _verbosity=verbosity)
    return 0


def main(argv: list[str] | None = None) -> int:
    verbosity = {"verbose": verbose_requested(argv)}  # until the config files are read
    body = functools.partial(_train, verbosity=verbosity)
    return run_command("petseg-train", argv, body, verbose=lambda: verbosity["verbose"])

"""``petseg-train``: the command line of ``petseg.training.train``."""

from __future__ import annotations

import functools

from petseg.console import run_command, verbose_requested


def _train(argv: list[str] | None, verbosity: dict[str, bool]) -> int:
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if "-h" in args or "--help" in args:  # petseg's options, at once (no Lightning import)
        from petseg.train_help import quick_help

        print(quick_help(), end="")
        raise SystemExit(0)  # as argparse's --help does
    if "--help-all" in args:  # LightningCLI's help: every option, the Trainer's last
        argv = [("--help" if a == "--help-all" else a) for a in args]
    from petseg.interrupts import TrainingInterrupted
    from petseg.training import train

    try:
        train(argv, _verbosity=verbosity)
    except TrainingInterrupted as stop:
        print(stop.line("petseg-train"), file=sys.stderr, flush=True)
        return stop.exit_code
    return 0


def main(argv: list[str] | None = None) -> int:
    verbosity = {"verbose": verbose_requested(argv)}  # until the config files are read
    body = functools.partial(_train, verbosity=verbosity)
    return run_command("petseg-train", argv, body, verbose=lambda: verbosity["verbose"])

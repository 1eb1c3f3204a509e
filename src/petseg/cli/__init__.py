"""Console entry points: ``petseg-train``, ``-test``, ``-predict``, ``-compare``, ``-export``
and ``-sweep``.

Each is a function ``main(argv=None)`` returning an exit code, so tests call it in-process, and a
thin layer over the Python API. This module imports nothing heavy: each command imports what it
needs after its arguments are parsed, so ``--help`` answers at once, and only ``petseg-train``
imports Lightning.

Bad input is printed as one line with exit code 2 (``petseg.console.run_command``); ``--verbose``
shows the traceback instead.
"""

from __future__ import annotations

from petseg.console import command_parser, run_command, verbose_requested

__all__ = ["command_parser", "run_command", "verbose_requested"]


def train_main(argv: list[str] | None = None) -> int:
    """``petseg-train``: fit a model, test its best checkpoint, print where it is and its Dice."""
    from petseg.cli.train import main

    return main(argv)


def test_main(argv: list[str] | None = None) -> int:
    """``petseg-test --ckpt CKPT``: score a checkpoint on the test split."""
    from petseg.cli.test import main

    return main(argv)


def predict_main(argv: list[str] | None = None) -> int:
    """``petseg-predict --ckpt CKPT INPUT... --output DIR``: masks and overlays of any images."""
    from petseg.cli.predict import main

    return main(argv)


def compare_main(argv: list[str] | None = None) -> int:
    """``petseg-compare [RUN...]``: curves of several runs in one PNG, and a summary table."""
    from petseg.cli.compare import main

    return main(argv)


def export_main(argv: list[str] | None = None) -> int:
    """``petseg-export --ckpt CKPT --output model.onnx``: a deployable model file."""
    from petseg.cli.export import main

    return main(argv)


def sweep_main(argv: list[str] | None = None) -> int:
    """``petseg-sweep --space SPACE.yaml --study NAME --trials N [petseg-train options]``."""
    from petseg.cli.sweep import main

    return main(argv)

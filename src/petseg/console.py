"""Running a command: one-line errors for a user's mistakes, tracebacks only when asked.

Every console entry point (``petseg.cli``, ``petseg-synth``, ``petseg-bench``, ``petseg-sweep``)
runs its body through ``run_command``: bad input is printed as one line,
``<prog>: error: <what> <what to do>``, with exit code 2: petseg's own ``PetsegError``, argument
errors, file-system errors (naming the file) and running out of memory. ``--verbose``, a flag in
every command, shows the traceback instead (argument errors stay one line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from jsonargparse import ArgumentError, ArgumentParser

from petseg.errors import PetsegError

# How torch (CPU, CUDA) and OpenCV (albumentations' resizing) say that an allocation failed.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "Insufficient memory")


def user_message(err: BaseException) -> str | None:
    """The one-line message for an error a user can cause, or None for a bug."""
    if isinstance(err, (PetsegError, ArgumentError)):
        message = str(err)
        if "Original Traceback" in message:  # raised in a DataLoader worker: keep its last line
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        return " ".join(message.split())  # jsonargparse's messages span several lines
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    text = str(err)
    if isinstance(err, MemoryError) or any(sign in text for sign in _OUT_OF_MEMORY):
        return "out of memory; lower --data.image_size or the batch size"
    return None


def verbose_requested(argv: list[str] | None) -> bool:
    """Whether the flag ``--verbose`` is on the command line (read before parsing, so that it
    also covers what parsing does)."""
    return "--verbose" in (sys.argv[1:] if argv is None else argv)


def run_command(
    prog: str,
    argv: list[str] | None,
    body: Callable[[list[str] | None], int],
    verbose: Callable[[], bool] | None = None,
) -> int:
    """Run ``body(argv)``, printing a user's mistake as one line with exit code 2.

    ``verbose``, asked once the body has failed, says whether tracebacks were requested (for
    ``petseg-train``, whose config files can say ``verbose: true``); by default, whether the flag
    is on the command line. Argument errors are always one line: ``--verbose false`` is one
    (``--verbose`` is a flag), and a traceback would only show the parser.
    """
    flag = verbose_requested(argv)
    try:
        return body(argv)
    except Exception as err:
        message = user_message(err)
        traceback = verbose() if verbose is not None else flag
        if message is None or (traceback and not isinstance(err, ArgumentError)):
            raise
        hint = f" (see {prog} --help)" if isinstance(err, ArgumentError) else ""
        print(f"{prog}: error: {message}{hint}", file=sys.stderr)
        return 2


def command_parser(prog: str, description: str) -> ArgumentParser:
    """A parser that raises on bad arguments (``run_command`` prints them), with ``--verbose``."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return parser


def add_checkpoint_options(parser: ArgumentParser) -> None:
    """``--ckpt``, and ``--save_dir`` and ``--arch`` for finding ``best.ckpt`` or ``last.ckpt``
    (``petseg.runs.resolve_checkpoint``): the same rule in every command that reads a model."""
    parser.add_argument(
        "--ckpt",
        required=True,
        help="A .ckpt or .pth written by petseg-train. best.ckpt or last.ckpt alone, where the "
        "working directory has no such file, is that file of the newest run under --save_dir.",
    )
    parser.add_argument(
        "--save_dir",
        default="saved_models",
        help="Where --ckpt best.ckpt or last.ckpt is looked for: SAVE_DIR/<arch>/version_N/.",
    )
    parser.add_argument(
        "--arch",
        type=str | None,
        default=None,
        help="Look for best.ckpt or last.ckpt among the runs of this architecture only.",
    )


def checkpoint_line(path: object, details: str, reason: str = "") -> str:
    """The line every command prints about the model file it took, and why that one."""
    because = f"; {reason}" if reason else ""
    return f"checkpoint         {path} ({details}{because})"

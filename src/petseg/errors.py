"""The one error type petseg raises for bad input; the command line prints it as one line."""


class PetsegError(Exception):
    """Bad input (a path, a file, an argument) described in one line that says what to do."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message, whitespace collapsed, or the name of its
    type when it has no message: how petseg quotes a library's error in its own one line."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(err).__name__

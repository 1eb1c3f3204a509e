"""The one error type petseg raises for bad input; the command line prints it as one line."""


class PetsegError(Exception):
    """Bad input (a path, a file, an argument) described in one line that says what to do."""

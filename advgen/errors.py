"""The one error type of bad input."""


class AdvgenError(Exception):
    """Bad input. The CLI prints it as one line and exits with status 2."""

"""Errors that stop the server at start, with a message that says what to do."""


class StartupError(RuntimeError):
    """Something the server needs at start is not there."""

"""One status line on stderr while a load test runs: which level, how many calls, how far."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws in place on a terminal; on a pipe (CI logs) prints a plain line every few seconds."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 0.5, pipe_every_s: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every_s = every_s if self._tty else pipe_every_s
        self._last = 0.0
        self._width = 0

    def show(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        self._last = now
        if self._tty:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self, line: str) -> None:
        """Finish the current line for good."""
        if self._tty:
            self._stream.write("\r" + line.ljust(self._width) + "\n")
            self._width = 0
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def bar(done: float, total: float, width: int = 20) -> str:
    filled = 0 if total <= 0 else min(width, int(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"

"""The browser client as the server serves it: the pages, scripts and styles of `earshot.client`.

The client ships inside the wheel as package data and is found through
importlib.resources, wherever the package is installed (a wheel in a
virtual environment, an editable checkout, a container image).
"""

from __future__ import annotations

import os
import stat
from importlib.resources import files
from pathlib import Path

from starlette.staticfiles import StaticFiles

CLIENT_PACKAGE = "earshot.client"
SERVED_SUFFIXES = (".html", ".js", ".css")


def client_dir() -> Path:
    """The installed client folder (a real directory: wheels install unzipped)."""
    return Path(str(files(CLIENT_PACKAGE)))


class ClientFiles(StaticFiles):
    """StaticFiles that serves only the client's own files: never the package marker or caches."""

    def __init__(self) -> None:
        super().__init__(directory=client_dir(), html=True)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        full_path, found = super().lookup_path(path)
        if found is not None and stat.S_ISREG(found.st_mode) and not full_path.endswith(SERVED_SUFFIXES):
            return "", None
        return full_path, found

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

from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

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


class ClientOrNotAllowed:
    """The catch-all route's app: the client's files for GET and HEAD, and every other method a 405.

    It takes every method, so that it (not Starlette's first partly matching
    route) answers a method a path does not allow: for a path of the API the
    `Allow` header lists the methods of all its routes (GET and DELETE of a
    session are two routes), and GET of a POST-only path is a 405, not a
    missing file.
    """

    def __init__(self, api_routes: list[Route]) -> None:
        self._api_routes = api_routes
        self._files = ClientFiles()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = {
            method
            for route in self._api_routes
            if route.matches(scope)[0] is Match.PARTIAL
            for method in route.methods or ()
        }
        if not allowed and scope["method"] in ("GET", "HEAD"):
            await self._files(scope, receive, send)
            return
        raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed or {"GET", "HEAD"}))})

"""Errors with a message for a person: at start (`StartupError`) and on the HTTP API (`ApiError`, `error_response`)."""

from typing import Any, Optional

from starlette.responses import JSONResponse


class StartupError(RuntimeError):
    """Something the server needs at start is not there."""


class ApiError(Exception):
    """A request the API refuses: answered as `{"error": {"code", "message"}}` with `status` (server/app.py)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Optional[dict[str, str]] = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}  # WWW-Authenticate on a 401, Retry-After on a 429 or a 503
        self.extra = extra or {}  # more fields of the error object, e.g. the labels an unknown_label may name


def error_response(status: int, code: str, message: str, extra: Optional[dict[str, Any]] = None) -> JSONResponse:
    """The body of every API error: `{"error": {"code", "message"}}` (and `extra`'s fields, when given)."""
    return JSONResponse({"error": {**(extra or {}), "code": code, "message": message}}, status_code=status)

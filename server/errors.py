"""Errors with a message for a person: at start (`StartupError`) and on the HTTP API (`ApiError`, `error_response`)."""

from typing import Optional

from starlette.responses import JSONResponse


class StartupError(RuntimeError):
    """Something the server needs at start is not there."""


class ApiError(Exception):
    """A request the API refuses: answered as `{"error": {"code", "message"}}` with `status` (server/app.py)."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}  # WWW-Authenticate on a 401, Retry-After on a 429 or a 503


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The body of every API error: `{"error": {"code", "message"}}`."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

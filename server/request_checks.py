"""What every endpoint checks of a request before it acts: its JSON body, and who may use the session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request

from earshot.server.access import check_session_access
from earshot.server.errors import ApiError
from earshot.server.store import SessionRecord


async def read_json(request: Request) -> dict[str, Any]:
    settings = request.app.state.earshot.settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    try:
        body = await asyncio.wait_for(_read_body(request, limit), settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, "body_timeout", "the request body did not arrive in time") from None
    request.state.raw_body = bytes(body)  # as read: what a hop to another instance sends on (server/routing.py)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep, "[" * 2000
        raise ApiError(400, "bad_json", "request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    return data


async def _read_body(request: Request, limit: int) -> bytearray:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    return body


async def authorised_session(request: Request, action: str) -> SessionRecord:
    """The session of the path, when the caller may do `action` with it (server/access.py)."""
    session_id = request.path_params["session_id"]
    # An id not of the form store.create makes (16 lowercase hex digits) names no session either:
    # store.get answers None for it before anything reaches Redis, so it is a 404 like any unknown id.
    record = await request.app.state.earshot.store.get(session_id)
    if record is None:
        raise ApiError(404, "unknown_session", "no such session")
    check_session_access(request, record, action)
    return record


PURGE_VALUES = ("true", "1")


def purge_requested(request: Request) -> bool:
    value = request.query_params.get("purge")
    if value is not None and value not in PURGE_VALUES:
        raise ApiError(400, "bad_purge", "purge must be true (or 1), or left out")
    return value is not None

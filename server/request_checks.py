"""What every endpoint checks of a request before it acts: its JSON body, and the session's bearer token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request

from earshot.server.errors import ApiError
from earshot.server.store import SessionRecord, SessionStore


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
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
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


async def authorised_session(request: Request) -> SessionRecord:
    session_id = request.path_params["session_id"]
    record = await request.app.state.earshot.store.get(session_id)
    if record is None:
        raise ApiError(404, "unknown_session", f"no session {session_id}")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing_token", "send the session token as 'Authorization: Bearer <token>'")
    if not SessionStore.token_matches(record, token.strip()):
        raise ApiError(401, "bad_token", "the token does not belong to this session")
    return record

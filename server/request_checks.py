"""What every endpoint checks of a request before it acts: its JSON body, and the session's bearer token."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from earshot.server.errors import ApiError
from earshot.server.store import SessionRecord, SessionStore


async def read_json(request: Request) -> dict[str, Any]:
    limit = request.app.state.earshot.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep, "[" * 2000
        raise ApiError(400, "bad_json", "request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    return data


async def authorised_session(request: Request) -> SessionRecord:
    session_id = request.path_params["session_id"]
    # An id not of the form store.create makes (16 lowercase hex digits) names no session either:
    # store.get answers None for it before anything reaches Redis, so it is a 404 like any unknown id.
    record = await request.app.state.earshot.store.get(session_id)
    if record is None:
        raise ApiError(404, "unknown_session", "no such session")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing_token", "send the session token as 'Authorization: Bearer <token>'")
    if not SessionStore.token_matches(record, token.strip()):
        raise ApiError(401, "bad_token", "the token does not belong to this session")
    return record

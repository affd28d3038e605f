"""The API's endpoints about what is stored of people: erasure, the audit stream, the privacy notice.

    DELETE /api/admin/identities/{name}/sessions   (admin) every session the identity created, all keys
    GET    /api/admin/audit?after=&count=&session=  (admin) the audit stream, a page at a time
    GET    /api/privacy                             (public) what a call stores, how long, what is removed

DELETE /api/sessions/{id}?purge=true is server/api.py's `delete_session`. With auth none
there are no identities (no session has an owner): erasure answers 404 `no_identities`
and sessions are purged one by one; the audit stream is open like /api/admin/settings
(a loopback-only server, server/serve_command.py).
"""

from __future__ import annotations

import asyncio
import re
from contextlib import ExitStack
from dataclasses import asdict
from typing import Optional

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from earshot.server.access import auth_on, require
from earshot.server.api import AppState, end_call
from earshot.server.audit_trail import record_act
from earshot.server.errors import ApiError
from earshot.server.privacy import privacy_document
from earshot.server.recording_files import erase_recording
from earshot.server.store import StoreUnavailable, is_session_id

MAX_NAME_CHARS = 256
AUDIT_PAGE = 100  # entries per page unless `count` says otherwise
MAX_AUDIT_PAGE = 1000
SESSION_SCAN = 10_000  # audit entries looked through per page for one session's
STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
U64_MAX = 2**64 - 1


def _state(request: Request) -> AppState:
    return request.app.state.earshot


async def _require_admin(request: Request, policy_action: str, audit_action: str) -> None:
    """`require`, with a known identity's refusal (403) recorded; a 401 is anyone's, and not recorded."""
    try:
        require(request, policy_action)
    except ApiError as refused:
        if refused.status == 403:
            await record_act(request, audit_action, outcome=refused.code)
        raise


# --- right to erasure -------------------------------------------------------------------------
async def erase_identity(request: Request) -> JSONResponse:
    state = _state(request)
    name = request.path_params["name"]
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ApiError(400, "bad_identity", f"an identity's name has 1 to {MAX_NAME_CHARS} characters")
    if not auth_on(request):
        raise ApiError(404, "no_identities", "with --auth none no session has an owner: purge each session "
                                             "with DELETE /api/sessions/{id}?purge=true")
    await _require_admin(request, "identity erase", "identity.erase")
    listed = await state.store.sessions_of(name)
    with ExitStack() as holding:
        for session_id in listed:  # an offer that comes in meanwhile must not revive one (server/calls.py)
            holding.enter_context(state.calls.ending(session_id))
        await asyncio.gather(*(end_call(state, session_id, "identity erased") for session_id in listed))
        per_session, deleted = await state.store.erase(name)
        # A call that went live meanwhile (its offer was already being answered) ends too; it wrote nothing since.
        await asyncio.gather(*(end_call(state, session_id, "identity erased") for session_id in per_session))
        for session_id in {*listed, *per_session}:  # their call recordings too (server/recording_files.py)
            await asyncio.to_thread(erase_recording, state.settings, session_id)
    sessions = [session_id for session_id, keys in per_session.items() if keys]
    await record_act(request, "identity.erase", owner=name, sessions=len(sessions), keys_deleted=deleted)
    return JSONResponse({"owner": name, "sessions": sessions, "keys_deleted": deleted})


# --- the audit stream -------------------------------------------------------------------------
async def admin_audit(request: Request) -> JSONResponse:
    await _require_admin(request, "audit read", "audit.read")
    after, count, session = _audit_query(request)
    try:
        found, last = await _state(request).audit.page(after, count, session, SESSION_SCAN if session else count)
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc
    await record_act(request, "audit.read", session or "", entries=len(found))
    entries = [{"id": entry_id, **asdict(entry)} for entry_id, entry in found]
    return JSONResponse({"entries": entries, "next": last})


def _audit_query(request: Request) -> tuple[str, int, Optional[str]]:
    params = request.query_params
    after = params.get("after", "-")
    found = STREAM_ID.fullmatch(after)
    if after != "-" and (found is None or max(int(found[1]), int(found[2])) > U64_MAX or after == f"{U64_MAX}-{U64_MAX}"):
        raise ApiError(400, "bad_after", "after must be an audit entry's id, <milliseconds>-<sequence>, as `next` gives it")
    count = params.get("count", str(AUDIT_PAGE))
    if not (count.isascii() and count.isdigit() and len(count) <= 4 and 1 <= int(count) <= MAX_AUDIT_PAGE):
        raise ApiError(400, "bad_count", f"count must be a whole number from 1 to {MAX_AUDIT_PAGE}")
    session = params.get("session")
    if session is not None and not is_session_id(session):
        raise ApiError(400, "bad_session", "session must be a session id (16 lowercase hex digits)")
    return after, int(count), session


# --- the privacy notice -----------------------------------------------------------------------
async def privacy(request: Request) -> JSONResponse:
    return JSONResponse(privacy_document(_state(request).settings))

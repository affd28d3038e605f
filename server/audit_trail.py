"""What the API appends to the audit stream (server/audit.py): who read or deleted what, from where.

    who      the identity's name; `session-token` when the session's own token was the
             credential; `anonymous` otherwise (auth none, or a refused caller with no identity)
    role     the identity's role, or empty
    remote   the caller's address as the server saw it (a proxy's, behind one)

Reads of a transcript, a report or a summary, deletions, purges, erasures and reads
of the audit stream itself are recorded when done; a refusal (401 or 403) of an act
on a session that exists is recorded too, with the error code as its outcome.

An entry that cannot be stored (Redis away or full) neither undoes nor refuses the
act: a deletion has happened by then, and a read the policy allowed is the caller's
due; refusing it would make every stored call unreadable whenever Redis is full
(writes refused, reads still served), while an unaudited read is not lost either:
the entry goes to the server log at WARNING, every field of it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request

from earshot.server.access import caller
from earshot.server.audit import AuditEntry
from earshot.server.errors import ApiError
from earshot.server.request_checks import authorised_session
from earshot.server.store import SessionRecord

log = logging.getLogger(__name__)


def entry_for(request: Request, action: str, session: str = "", outcome: str = "ok", **detail: Any) -> AuditEntry:
    identity = caller(request)
    if getattr(request.state, "session_token", False):
        who, role = "session-token", ""
    elif identity is not None:
        who, role = identity.name, identity.role
    else:
        who, role = "anonymous", ""
    remote = request.client.host if request.client is not None else ""
    return AuditEntry(who, action, role, session, remote, outcome, detail)


async def record_act(request: Request, action: str, session: str = "", outcome: str = "ok", **detail: Any) -> None:
    """Append what the caller did; never raises (see the module's docstring)."""
    entry = entry_for(request, action, session, outcome, **detail)
    try:
        await request.app.state.earshot.audit.append(entry)
    except (RedisError, OSError) as exc:
        log.warning("audit entry not stored (%s): %s", exc, json.dumps(entry.fields(), sort_keys=True))


async def audited_session(request: Request, policy_action: str, audit_action: str) -> SessionRecord:
    """The path's session when the caller may do `policy_action` with it; a refusal is recorded as `audit_action`."""
    try:
        return await authorised_session(request, policy_action)
    except ApiError as refused:
        if refused.status in (401, 403):  # only after the session was found: an unknown id is a 404
            await record_act(request, audit_action, request.path_params["session_id"], refused.code)
        raise

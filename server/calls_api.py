"""The manager's view of ended calls: their stored facts, searched (what /calls.html shows).

    GET /api/calls?since=&until=&q=&topic=&intent=&agent=&limit=   facts of calls that ended in the range
    GET /api/calls/{session_id}                                    one call's facts

Who sees what follows the policy of server/access.py ("calls read"): an agent their own
calls, a supervisor their team's, an admin every call; with auth none, anyone on the
server. `q` matches, case-insensitively, the session id, agent, team, topic, intents and
escalation reason. Times are unix seconds; `since` defaults to 7 days ago.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse

from earshot.agents.call_facts import export_row
from earshot.server.access import allowed_for, require_scoped
from earshot.server.auth import Identity
from earshot.server.errors import ApiError
from earshot.server.store import is_session_id

DEFAULT_WINDOW_S = 7 * 86400
MAX_LIMIT = 1000
MAX_QUERY = 200
SCAN_MOST = 20_000  # facts read for one search at most (newest first, in pages: a search stops at `limit` matches)
FILTERS = ("topic", "intent", "agent")


async def list_calls(request: Request) -> JSONResponse:
    identity = require_scoped(request, "calls read")
    since, until, limit = _range(request)
    query = request.query_params.get("q", "").strip().lower()
    if len(query) > MAX_QUERY:
        raise ApiError(400, "bad_query", f"q must be at most {MAX_QUERY} characters")
    wanted = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    rows = []
    async for call in request.app.state.earshot.facts.newest_first(since, until, SCAN_MOST):
        if not _visible(identity, call):
            continue
        row = export_row(call)
        if query and query not in _haystack(row):
            continue
        if any(value and not _matches(row, name, value) for name, value in wanted.items()):
            continue
        rows.append({**row, "summary_url": f"/sessions/{row['session_id']}/summary" if row["mode"] == "assist" else ""})
        if len(rows) >= limit:
            break
    return JSONResponse({"calls": rows, "since": since, "until": until, "count": len(rows)})


async def get_call(request: Request) -> JSONResponse:
    identity = require_scoped(request, "calls read")
    session_id = request.path_params["session_id"]
    if not is_session_id(session_id):
        raise ApiError(404, "unknown_call", "no such call")
    found = await request.app.state.earshot.facts.get(session_id)
    if found is None or not _visible(identity, found):
        raise ApiError(404, "unknown_call", "no facts for this call (it has not ended, its facts are not computed yet, or it is gone)")
    return JSONResponse(found)


def _range(request: Request) -> tuple[float, float, int]:
    params = request.query_params
    now = time.time()
    since = _number(params.get("since"), "since", now - DEFAULT_WINDOW_S)
    until = _number(params.get("until"), "until", now)
    if until < since:
        raise ApiError(400, "bad_range", "until must not be before since")
    limit = params.get("limit", "200")
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 4 and 1 <= int(limit) <= MAX_LIMIT):
        raise ApiError(400, "bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return since, until, int(limit)


def _number(text: Optional[str], name: str, default: float) -> float:
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 <= value < 1e11):  # also rejects nan and inf
        raise ApiError(400, f"bad_{name}", f"{name} must be a time in unix seconds")
    return value


def _visible(identity: Optional[Identity], facts: dict[str, Any]) -> bool:
    if identity is None:  # auth none
        return True
    return allowed_for(identity, "calls read", facts["meta"]["agent"], facts["meta"]["team"])


def _haystack(row: dict[str, Any]) -> str:
    fields = ("session_id", "agent", "team", "topic", "topic_label", "intents", "escalation_reason")
    return " ".join(str(row[name]) for name in fields).lower()


def _matches(row: dict[str, Any], name: str, value: str) -> bool:
    if name == "intent":
        return value in str(row["intents"]).split(";")
    if name == "topic":
        return value in (row["topic"], row["topic_label"])
    return row[name] == value

"""The API as an OpenAPI 3 document, served at GET /openapi.json, built from the app's routes.

Each route's path and methods come from the route list in server/app.py; what an
operation takes and answers comes from `OPERATIONS`, keyed by the endpoint's
name. A route whose endpoint has no entry stops the app from being built, so the
document cannot fall behind the routes (tests/test_openapi.py checks it, and
tests/test_fuzz_api.py fuzzes the live server with it).

Why this module is long: it is one table, `OPERATIONS` (and the schemas it names),
with an entry per endpoint; splitting a table by endpoint group would spread what
the fuzzer reads over several files for no gain in reading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Optional, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from earshot.agents.roles import DIFFICULTIES, ROLES
from earshot.models.redaction.kinds import KINDS
from earshot.server.audit import ACTIONS
from earshot.server.feedback_api import CORRECTION_SCHEMAS
from earshot.server.intent_reload import HEADS_RELOADED
from earshot.server.modes import MODE_KINDS
from earshot.server.privacy_api import MAX_AUDIT_PAGE, MAX_NAME_CHARS, STREAM_ID
from earshot.server.request_checks import PURGE_VALUES
from earshot.server.store import SESSION_ID

SESSION_ID_PATTERN = f"^{SESSION_ID.pattern}$"  # the form store.create makes
ERROR_STATUSES = {
    400: "malformed request",
    401: "missing or wrong bearer token",
    403: "not allowed for this caller",
    404: "no such session, or nothing there yet",
    408: "the request body did not arrive in time",
    409: "the session is live, has ended, or its live state has expired; or an offer is being answered; "
         "or (intent heads) the files do not load, or intents are off",
    413: "request body too large",
    429: "too many requests; see Retry-After",
    503: "at capacity, or session storage unreachable; see Retry-After",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the session's token"}},
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "NewSession": {
            "type": "object",
            "anyOf": [  # a role, unless the mode needs none
                {"required": ["role"]},
                {"required": ["mode"], "properties": {"mode": {"enum": [n for n, k in MODE_KINDS.items() if not k.needs_role]}}},
            ],
            "properties": {
                "mode": {"type": "string", "enum": list(MODE_KINDS), "default": "interview"},
                "role": {"type": "string", "enum": [*ROLES, ""], "description": "empty or left out: assist only"},
                "difficulty": {"type": "string", "enum": list(DIFFICULTIES), "default": "medium"},
            },
            "example": {"mode": "interview", "role": "software_engineer", "difficulty": "easy"},
        },
        "IceServer": {
            "type": "object",
            "required": ["urls"],
            "properties": {
                "urls": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "username": {"type": "string"},
                "credential": {"type": "string"},
            },
        },
        "SessionCreated": {
            "type": "object",
            "required": ["session_id", "token"],
            "properties": {
                "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
                "token": {"type": "string"},
                "ice_servers": {"type": "array", "items": _ref("IceServer")},
            },
        },
        "Offer": {
            "type": "object",
            "required": ["sdp", "type"],
            "properties": {
                "sdp": {"type": "string"},
                "type": {"type": "string", "enum": ["offer"]},
                "tracks": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "assist sessions: track id -> speaker",
                },
            },
        },
        "Answer": {
            "type": "object",
            "required": ["sdp", "type"],
            "properties": {"sdp": {"type": "string"}, "type": {"type": "string", "enum": ["answer"]}},
        },
        "Session": {
            "type": "object",
            "required": ["session_id", "mode", "state", "live", "finals"],
            "properties": {
                "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
                "mode": {"type": "string", "enum": list(MODE_KINDS)},
                "role": {"type": "string"},
                "difficulty": {"type": "string"},
                "state": {"type": "string"},
                "created_at": {"type": "number"},
                "audio_s": {"type": "number"},
                "live": {"type": "boolean"},
                "finals": {"type": "array", "items": {"type": "object"}},
                "pace": {},
                "recording": {"type": "object", "description": "what its calls recorded (setting recording)"},
            },
        },
        "Ended": {
            "type": "object",
            "required": ["session_id", "state", "finals"],
            "properties": {
                "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
                "state": {"type": "string", "enum": ["ended"]},
                "finals": {"type": "integer", "minimum": 0},
                "summary_url": {"type": "string"},
            },
        },
        "Purged": {
            "type": "object",
            "required": ["session_id", "state", "keys_deleted"],
            "properties": {
                "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
                "state": {"type": "string", "enum": ["purged"]},
                "keys_deleted": {"type": "integer", "minimum": 0},
            },
        },
        "Erased": {
            "type": "object",
            "required": ["owner", "sessions", "keys_deleted"],
            "properties": {
                "owner": {"type": "string"},
                "sessions": {"type": "array", "items": {"type": "string", "pattern": SESSION_ID_PATTERN}},
                "keys_deleted": {"type": "integer", "minimum": 0},
            },
        },
        "AuditEntry": {
            "type": "object",
            "required": ["id", "at", "who", "role", "action", "session", "remote", "outcome", "detail"],
            "properties": {
                "id": {"type": "string"},
                "at": {"type": "number"},
                "who": {"type": "string", "description": "an identity's name, session-token or anonymous"},
                "role": {"type": "string"},
                "action": {"type": "string", "enum": list(ACTIONS)},
                "session": {"type": "string"},
                "remote": {"type": "string"},
                "outcome": {"type": "string", "description": "ok, or the error code of a refusal"},
                "detail": {"type": "object", "description": "counts and names, never what was said"},
            },
        },
        "AuditPage": {
            "type": "object",
            "required": ["entries", "next"],
            "properties": {
                "entries": {"type": "array", "items": _ref("AuditEntry")},
                "next": {"type": "string", "nullable": True, "description": "the next page's `after`; null: none yet"},
            },
        },
        "Privacy": {
            "type": "object",
            "required": ["retention_s", "retention", "redacted", "consent", "audio_stored"],
            "properties": {
                "retention_s": {"type": "object", "additionalProperties": {"type": "integer"}},
                "retention": {"type": "object", "additionalProperties": {"type": "string"}},
                "redacted": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string", "enum": list(KINDS)}},
                },
                "consent": {"type": "object", "additionalProperties": {"type": "string"}},
                "audio_stored": {"type": "boolean"},
                "audio_retention_s": {"type": "integer"},
            },
        },
        **CORRECTION_SCHEMAS,  # server/feedback_api.py
        "HeadsReloaded": HEADS_RELOADED,  # server/intent_reload.py
        "Probe": {
            "type": "object",
            "required": ["status", "instance"],
            "properties": {
                "status": {"type": "string", "enum": ["live", "ready", "draining", "store_unavailable"]},
                "instance": {"type": "string", "description": "the instance's id (instance_id)"},
            },
        },
        "Calls": {
            "type": "object",
            "required": ["calls", "since", "until", "count"],
            "properties": {
                "calls": {"type": "array", "items": {"type": "object"}},
                "since": {"type": "number"},
                "until": {"type": "number"},
                "count": {"type": "integer"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]}},
        },
    },
}


@dataclass(frozen=True)
class Operation:
    """What one endpoint takes and answers; the path and method come from its route."""

    summary: str
    ok: dict[str, Any]  # the success response: {"status": int, "content": {...}}
    body: Optional[str] = None  # the JSON request body's schema name
    token: bool = False  # takes the session's bearer token
    errors: tuple[int, ...] = ()
    query: tuple[dict[str, Any], ...] = ()  # its query parameters
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(status: int, description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "description": description, "content": content}


HTML = {"text/html": {"schema": {"type": "string"}}}
PATH_PARAMETERS = {
    "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "description": "an identity's name"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

SESSION_ERRORS = (400, 401, 403, 404, 503)

OPERATIONS: dict[str, Operation] = {
    "create_session": Operation(
        "Create a session", _ok(201, "the session and its token", _json(_ref("SessionCreated"))),
        body="NewSession", errors=(400, 401, 403, 408, 413, 429, 503),
    ),
    "offer": Operation(
        "Connect: post the caller's WebRTC offer", _ok(200, "the server's answer", _json(_ref("Answer"))),
        body="Offer", token=True, errors=(*SESSION_ERRORS, 408, 409, 413, 429),
    ),
    "get_session": Operation(
        "The session, its finals and pace", _ok(200, "the session", _json(_ref("Session"))), token=True,
        errors=SESSION_ERRORS,
    ),
    "delete_session": Operation(
        "End the session; with purge, also delete every key of it at once",
        _ok(200, "ended, or purged", _json({"oneOf": [_ref("Ended"), _ref("Purged")]})), token=True,
        errors=(*SESSION_ERRORS, 409),
        query=(_query("purge", {"type": "string", "enum": list(PURGE_VALUES)}, "delete every key of the session"),),
    ),
    "report": Operation(
        "An interview's report", _ok(200, "the report", _json({"type": "object"})), token=True, errors=SESSION_ERRORS
    ),
    "summary": Operation(
        "An assist call's summary", _ok(200, "the summary", _json({"type": "object"})), token=True,
        errors=SESSION_ERRORS,
    ),
    "list_calls": Operation(
        "Ended calls' facts, newest first, searched (the calls page)", _ok(200, "calls", _json(_ref("Calls"))),
        errors=(400, 401, 403, 503),
        query=(
            _query("since", {"type": "number", "minimum": 0}, "calls that ended at or after (unix seconds; default 7 days ago)"),
            _query("until", {"type": "number", "minimum": 0}, "and at or before (default now)"),
            _query("q", {"type": "string", "maxLength": 200}, "text in the id, agent, team, topic, intents or escalation"),
            _query("topic", {"type": "string"}, "only this topic (name or label)"),
            _query("intent", {"type": "string"}, "only calls with this intent"),
            _query("agent", {"type": "string"}, "only this agent's calls"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "calls at most (default 200)"),
        ),
    ),
    "get_call": Operation(
        "One ended call's facts", _ok(200, "the facts", _json({"type": "object"})), errors=(401, 403, 404, 503)
    ),
    "report_page": Operation("The report page (token in the URL fragment)", _ok(200, "HTML", HTML), errors=(400, 404)),
    "summary_page": Operation("The summary page (token in the URL fragment)", _ok(200, "HTML", HTML), errors=(400, 404)),
    "health": Operation(
        "Redis and engine state", _ok(200, "healthy", _json(_ref("Health"))),
        extra={"503": {"description": "Redis unreachable", "content": _json(_ref("Health"))}},
    ),
    "health_live": Operation("Liveness: the process answers", _ok(200, "live", _json(_ref("Probe")))),
    "health_ready": Operation(
        "Readiness: takes new sessions (Redis answers, not draining)", _ok(200, "ready", _json(_ref("Probe"))),
        extra={"503": {"description": "draining, or Redis unreachable", "content": _json(_ref("Probe"))}},
    ),
    "metrics": Operation(
        "Prometheus metrics", _ok(200, "metrics", {"text/plain": {"schema": {"type": "string"}}}), errors=(401, 403)
    ),
    "admin_settings": Operation(
        "The server's settings, secrets masked (admin)", _ok(200, "settings", _json({"type": "object"})),
        errors=(401, 403),
    ),
    "erase_identity": Operation(
        "Delete every session an identity created, all its keys (admin; right to erasure)",
        _ok(200, "erased", _json(_ref("Erased"))), errors=(400, 401, 403, 404, 503),
    ),
    "admin_audit": Operation(
        "The audit stream, oldest first: who read or deleted what (admin)", _ok(200, "a page", _json(_ref("AuditPage"))),
        errors=(400, 401, 403, 503),
        query=(
            _query("after", {"type": "string", "pattern": f"^{STREAM_ID.pattern}$"}, "the entries after this id (`next`)"),
            _query("count", {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_PAGE}, "entries scanned, at most"),
            _query("session", {"type": "string", "pattern": SESSION_ID_PATTERN}, "only this session's entries"),
        ),
    ),
    "privacy": Operation(
        "What a call stores, for how long, and what is removed first", _ok(200, "the notice", _json(_ref("Privacy")))
    ),
    "correct_intents": Operation(
        "Correct an utterance's intents (one click of the assist overlay): the labels it has now",
        _ok(200, "the utterance's labels after the correction", _json(_ref("Corrected"))),
        body="CorrectionRequest", token=True, errors=(*SESSION_ERRORS, 408, 409, 413),
    ),
    "read_corrections": Operation(
        "An assist call's stored intent corrections, one per corrected utterance (the overlay's read-back)",
        _ok(200, "the corrections, in utterance order", _json(_ref("Corrections"))), token=True,
        errors=SESSION_ERRORS,
    ),
    "reload_intent_heads": Operation(
        "Read the intent heads again and use them for later finals; calls go on (admin)",
        _ok(200, "the heads in use now", _json(_ref("HeadsReloaded"))), errors=(401, 403, 409),
    ),
    "openapi": Operation("This document", _ok(200, "OpenAPI 3", _json({"type": "object"}))),
}


def api_routes(routes: Sequence[BaseRoute]) -> list[Route]:
    """The routes the document describes: every Route but the client's files (the catch-all)."""
    return [route for route in routes if isinstance(route, Route) and route.name != "client"]


def operation_for(route: Route) -> Operation:
    name = getattr(route.endpoint, "__name__", type(route.endpoint).__name__)
    if name not in OPERATIONS:
        raise LookupError(f"{route.path} ({name}) has no OpenAPI entry in server/openapi.py OPERATIONS")
    return OPERATIONS[name]


def _operation(route: Route, op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(op.ok["status"]): {"description": op.ok["description"], "content": op.ok["content"]},
        **op.extra,
    }
    for status in op.errors:
        responses.setdefault(str(status), {"description": ERROR_STATUSES[status], "content": _json(_ref("Error"))})
    spec: dict[str, Any] = {"operationId": route.name, "summary": op.summary, "responses": responses}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in PATH_PARAMETERS.items()
        if "{" + name + "}" in route.path
    ]
    parameters += op.query
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": _json(_ref(op.body))}
    if op.token:
        spec["security"] = [{"bearer": []}]
    return spec


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes(routes):
        op = operation_for(route)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, op)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Earshot", "version": version("earshot")},
        "paths": paths,
        "components": COMPONENTS,
    }


def openapi_route(routes: Sequence[BaseRoute]) -> Route:
    """GET /openapi.json: the document of `routes` and of itself, built once."""
    document: dict[str, Any] = {}

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    route = Route("/openapi.json", openapi, methods=["GET"])
    document.update(openapi_document([*routes, route]))
    return route

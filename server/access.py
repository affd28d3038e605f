"""Who may do what: the role x action policy, and the checks the endpoints call.

With `auth none` nothing here refuses anything an endpoint allowed before: the
session endpoints ask for the session's token as they always have, and every other
endpoint is open (a laptop on loopback; see serve_command.py).

With `auth on`, the policy below decides. A session-scoped action is allowed for
`own` sessions (created by this identity), `team` sessions (created by anyone of its
team) or `any` session; the others are `yes` or `-`. A session's own token stays a
capability for that one session (its media connection, reading it, ending it, its
report or summary link): the session endpoints try it first, then the identity.
"""

from __future__ import annotations

from typing import Optional

from starlette.requests import Request

from earshot.server.auth import ROLES, Identity, bearer
from earshot.server.errors import ApiError
from earshot.server.store import SessionRecord, SessionStore

# fmt: off
POLICY: dict[str, tuple[str, str, str, str]] = {
    #                        candidate  agent   supervisor  admin
    "create interview":     ("yes",     "-",    "-",        "yes"),
    "create transcribe":    ("yes",     "-",    "-",        "yes"),
    "create assist":        ("-",       "yes",  "-",        "yes"),
    "session read":         ("own",     "own",  "team",     "any"),
    "session offer":        ("own",     "own",  "-",        "any"),
    "session delete":       ("own",     "own",  "-",        "any"),
    "session purge":        ("own",     "own",  "-",        "any"),
    "report read":          ("own",     "-",    "team",     "any"),
    "summary read":         ("-",       "own",  "team",     "any"),
    "calls read":           ("-",       "own",  "team",     "any"),
    "metrics":              ("-",       "-",    "-",        "yes"),
    "health detail":        ("-",       "-",    "-",        "yes"),
    "settings read":        ("-",       "-",    "-",        "yes"),
    "identity erase":       ("-",       "-",    "-",        "yes"),
    "audit read":           ("-",       "-",    "-",        "yes"),
    "intent correct":       ("-",       "own",  "-",        "any"),
    "intent heads reload":  ("-",       "-",    "-",        "yes"),
}
# fmt: on

WWW_AUTHENTICATE = {"WWW-Authenticate": "Bearer"}


def allowed(identity: Identity, action: str, record: Optional[SessionRecord] = None) -> bool:
    return allowed_for(identity, action, record.owner if record else "", record.team if record else "")


def allowed_for(identity: Identity, action: str, owner: str, team: str) -> bool:
    """`allowed` for something owned by `owner` of `team` (a session, or the stored facts of one)."""
    scope = POLICY[action][ROLES.index(identity.role)]
    if scope in ("yes", "any"):
        return True
    if scope == "own":
        return bool(owner) and owner == identity.name
    if scope == "team":
        return bool(team) and team == identity.team
    return False


def auth_on(request: Request) -> bool:
    return request.app.state.earshot.auth is not None


def caller(request: Request) -> Optional[Identity]:
    return getattr(request.state, "identity", None)


def unauthorised(request: Request) -> ApiError:
    if getattr(request.state, "credential", "missing") == "missing":
        return ApiError(401, "missing_credentials", "send a credential as 'Authorization: Bearer <token or key>'",
                        headers=WWW_AUTHENTICATE)
    return ApiError(401, "bad_credentials", "the credential is not valid", headers=WWW_AUTHENTICATE)


def _identified(request: Request) -> Optional[Identity]:
    """The caller's identity; None with auth none; 401 when auth is on and it sent no valid credential."""
    if not auth_on(request):
        return None
    identity = caller(request)
    if identity is None:
        raise unauthorised(request)
    return identity


def require(request: Request, action: str) -> Optional[Identity]:
    """The caller, when the policy lets it do `action` (always with auth none); else 401 or 403."""
    identity = _identified(request)
    if identity is not None and not allowed(identity, action):
        raise ApiError(403, "forbidden", "your role may not do this")
    return identity


def require_scoped(request: Request, action: str) -> Optional[Identity]:
    """The caller, when the policy lets it do `action` on some sessions (its own, its team's, any);
    the caller then filters what it answers with `allowed(identity, action, record)`."""
    identity = _identified(request)
    if identity is not None and POLICY[action][ROLES.index(identity.role)] == "-":
        raise ApiError(403, "forbidden", "your role may not do this")
    return identity


def may(request: Request, action: str) -> bool:
    """Whether the caller may do `action`, without refusing: auth none allows everything."""
    identity = caller(request)
    return not auth_on(request) or (identity is not None and allowed(identity, action))


def check_session_access(request: Request, record: SessionRecord, action: str) -> None:
    """The session's own token, or (auth on) an identity the policy allows for this session.

    Which one it was is left at `request.state.session_token` (True: the token), for the audit trail.
    """
    token = bearer(request.headers) or ""
    request.state.session_token = False
    if not auth_on(request):
        if not token:
            raise ApiError(401, "missing_token", "send the session token as 'Authorization: Bearer <token>'")
        if not SessionStore.token_matches(record, token):
            raise ApiError(401, "bad_token", "the token does not belong to this session")
        request.state.session_token = True
        return
    if token and SessionStore.token_matches(record, token):
        request.state.session_token = True
        return
    identity = caller(request)
    if identity is None:
        raise unauthorised(request)
    if not allowed(identity, action, record):
        raise ApiError(403, "forbidden", "this session is not yours to do this with")

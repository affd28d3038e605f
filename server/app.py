"""The Starlette app: routes, exception handlers, lifespan.

    POST   /api/sessions                 {mode, role, difficulty} -> {session_id, token}
                                         (mode "assist" needs no role)
    POST   /api/sessions/{id}/offer      Bearer token, {sdp, type: "offer", tracks?} -> {sdp, type: "answer"}
                                         tracks (assist): {"<track id>": "agent" | "customer"}
    GET    /api/sessions/{id}            Bearer token -> session, finals, pace
    DELETE /api/sessions/{id}            Bearer token -> ends the session; ?purge=true: and deletes all of it
    GET    /api/sessions/{id}/report     Bearer token -> the interview report (JSON)
    GET    /sessions/{id}/report         the report page (reads the token from the URL fragment)
    GET    /api/sessions/{id}/summary    Bearer token -> an assist call's summary (JSON)
    GET    /sessions/{id}/summary        the summary page (token from the URL fragment)
    GET    /api/calls                    ended calls' facts, searched: ?since=&until=&q=&topic=&intent=&agent=&limit=
    GET    /api/calls/{id}               one ended call's facts (server/calls_api.py; the calls page, /calls.html)
    GET    /healthz                      Redis and engine state (or a minimal liveness answer)
    GET    /healthz/live                 the process answers (a liveness probe)
    GET    /healthz/ready                it takes new sessions: Redis answers, not draining (a readiness probe)
    GET    /metrics                      Prometheus metrics (server/metrics.py)
    GET    /api/admin/settings           the settings, secrets masked (admin)
    DELETE /api/admin/identities/{name}/sessions   every session an identity created, deleted (admin)
    GET    /api/admin/audit              the audit stream: who read or deleted what (admin)
    GET    /api/privacy                  what a call stores, for how long, and what is redacted
    POST   /api/sessions/{id}/corrections  Bearer token, {utterance_id, speaker, add, remove} -> the utterance's
                                         labels now (an agent's intent correction, server/feedback_api.py)
    GET    /api/sessions/{id}/corrections  Bearer token -> the call's stored intent corrections (as the summary's readers)
    POST   /api/admin/intent-heads/reload  the intent heads read again and swapped in, calls go on (admin; also SIGHUP)
    GET    /openapi.json                 this API as OpenAPI 3 (server/openapi.py)
    GET    /                             the client (client/index.html and its files)

With `auth on`, who may call what is server/access.py; /healthz and /metrics
may instead be served on internal_host:internal_port (127.0.0.1 by default) (`create_internal_app`).

The endpoints are in server/api.py (sessions), server/calls_api.py (ended calls),
server/operations_api.py (health, metrics, settings) and server/privacy_api.py. Every error is JSON,
`{"error": {"code": "...", "message": "..."}}`, from the exception handlers
below: a refused request (ApiError) with its 4xx status (429 and 503 at_capacity
with Retry-After), Redis away with 503, Redis full (maxmemory) with 507,
an unknown path or method with 404/405, and anything unexpected with 500.
No error ends the server. Every response, errors included, passes the
browser-safety middleware of server/security.py (headers, Host, Origin).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from earshot.server import api, calls_api, feedback_api, operations_api, privacy_api
from earshot.server.api import AppState
from earshot.server.at_rest import SealError
from earshot.server.auth import IdentityMiddleware
from earshot.server.client_files import ClientOrNotAllowed
from earshot.server.errors import ApiError, error_response
from earshot.server.openapi import openapi_route
from earshot.server.recording import sweep_recordings
from earshot.server.security import security_headers, security_middleware
from earshot.server.store import StoreFull, StoreUnavailable
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
REJECTIONS = ("at_capacity", "rate_limited")  # refusals for want of room or of allowance, not for bad input


async def refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.code in REJECTIONS:  # what a load balancer and an operator watch (earshot_sessions_rejected_total)
        request.app.state.earshot.metrics.count_rejected(exc.code)
    response = error_response(exc.status, exc.code, exc.message, exc.extra)
    response.headers.update(exc.headers)
    return response


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "store_unavailable", "session storage (Redis) is unreachable; try again")


async def store_full(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(507, "store_full", "session storage is full; try again once older sessions have expired")


async def undecryptable(request: Request, exc: Exception) -> JSONResponse:
    # The server's storage keys do not open a stored value: a key file that lost a key, or servers on one
    # Redis with different key files (server/storage_keys.py). A fault of the deployment, not the request.
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(500, "undecryptable", "stored data of this session cannot be decrypted with this server's storage keys")


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"), exc.detail)
    response.headers.update(exc.headers or {})  # e.g. Allow, on a 405
    return response


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    response = error_response(500, "internal_error", "the server failed on this request; it is logged")
    # Starlette answers with this handler from outside the app's middleware: the headers are added here.
    response.raw_headers.extend(security_headers(request.url.scheme))
    return response


def create_app(state: AppState) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recordings = asyncio.ensure_future(sweep_recordings(state.settings))  # their retention (server/recording.py)
        for services in state.modes.values():
            await services.warm()  # common phrases synthesised, knowledge embedded, before the first caller
        loop_watch = asyncio.ensure_future(state.metrics.watch_event_loop())
        heartbeat = asyncio.ensure_future(state.cluster.run())  # in placement from its first beat (server/cluster.py)
        yield
        await cancel_and_wait(recordings)
        loop_watch.cancel()
        await cancel_and_wait(heartbeat)
        await state.calls.close_all()
        try:
            await state.cluster.leave()
        except StoreUnavailable:
            pass  # out of placement anyway once its beat lapses
        await state.forwarder.close()
        if state.llm is not None:
            await state.llm.close()
        state.encoders.close()
        await state.store.close()

    routes = [
        Route("/api/sessions", api.create_session, methods=["POST"]),
        Route("/api/sessions/{session_id}/offer", api.offer, methods=["POST"]),
        Route("/api/sessions/{session_id}", api.get_session, methods=["GET"]),
        Route("/api/sessions/{session_id}", api.delete_session, methods=["DELETE"]),
        Route("/api/sessions/{session_id}/report", api.report, methods=["GET"]),
        Route("/sessions/{session_id}/report", api.report_page, methods=["GET"]),
        Route("/api/sessions/{session_id}/summary", api.summary, methods=["GET"]),
        Route("/sessions/{session_id}/summary", api.summary_page, methods=["GET"]),
        Route("/api/calls", calls_api.list_calls, methods=["GET"]),
        Route("/api/calls/{session_id}", calls_api.get_call, methods=["GET"]),
        Route("/healthz", operations_api.health, methods=["GET"]),
        Route("/healthz/live", operations_api.health_live, methods=["GET"]),
        Route("/healthz/ready", operations_api.health_ready, methods=["GET"]),
        Route("/metrics", operations_api.metrics, methods=["GET"]),
        Route("/api/admin/settings", operations_api.admin_settings, methods=["GET"]),
        Route("/api/admin/identities/{name}/sessions", privacy_api.erase_identity, methods=["DELETE"]),
        Route("/api/admin/audit", privacy_api.admin_audit, methods=["GET"]),
        Route("/api/privacy", privacy_api.privacy, methods=["GET"]),
        Route("/api/sessions/{session_id}/corrections", feedback_api.correct_intents, methods=["POST"]),
        Route("/api/sessions/{session_id}/corrections", feedback_api.read_corrections, methods=["GET"]),
        Route("/api/admin/intent-heads/reload", operations_api.reload_intent_heads, methods=["POST"]),
    ]
    routes += [
        openapi_route(routes),  # the document of every route above and of itself (server/openapi.py)
        # Last, and for every method: the client's files, or a 405 naming what the path allows.
        Route("/{path:path}", ClientOrNotAllowed(list(routes)), name="client"),
    ]
    handlers = {
        ApiError: refused,
        StoreUnavailable: store_unavailable,
        StoreFull: store_full,
        SealError: undecryptable,
        HTTPException: http_error,
        Exception: internal_error,
    }
    app = Starlette(
        routes=routes,
        middleware=[*security_middleware(state.settings), Middleware(IdentityMiddleware, authenticator=state.auth)],
        lifespan=lifespan,
        exception_handlers=handlers,
    )
    app.state.earshot = state
    return app


def create_internal_app(state: AppState) -> Starlette:
    """/metrics and the detailed /healthz for internal_host:internal_port: no checks, the main app's lifespan."""
    routes = [
        Route("/healthz", operations_api.health_detail, methods=["GET"]),
        Route("/metrics", operations_api.metrics_internal, methods=["GET"]),
    ]
    handlers = {HTTPException: http_error, StoreUnavailable: store_unavailable, Exception: internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.earshot = state
    return app

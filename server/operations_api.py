"""The operators' endpoints: health (detailed, liveness, readiness), metrics, and the settings.

POST /api/admin/intent-heads/reload (admin) loads new intent heads (server/intent_reload.py).

Like server/api.py, each reads the process's `AppState` from the request; a
refusal raises `ApiError`, which server/app.py answers as JSON.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from earshot.server.access import auth_on, may, require
from earshot.server.api import AppState
from earshot.server.audit_trail import record_act
from earshot.server.errors import ApiError
from earshot.server.intent_reload import ReloadError
from earshot.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from earshot.server.modes.interview import InterviewServices
from earshot.server.store import StoreUnavailable


def _state(request: Request) -> AppState:
    return request.app.state.earshot


# --- operations -----------------------------------------------------------------------------
# The main port's /healthz: the detailed answer for whoever may see it (anyone with auth none, admins
# with auth on) unless an internal port serves it; else a minimal liveness answer, public.
# /metrics there: anyone with auth none, admins with auth on; with an internal port, admins only.
# The internal port (internal_host:internal_port, loopback by default; server/app.py) serves both without checks.
async def health(request: Request) -> JSONResponse:
    if _state(request).settings.internal_port == 0 and may(request, "health detail"):
        return await health_detail(request)
    redis_ok = await _redis_ok(_state(request))
    return JSONResponse({"status": "ok" if redis_ok else "degraded"}, status_code=200 if redis_ok else 503)


# /healthz/live and /healthz/ready are for a load balancer or Kubernetes' probes: public, minimal.
# Live: the process answers (its event loop runs). Ready: it takes new sessions: Redis answers, and it
# is not draining (SIGTERM). A full instance stays ready: it places new sessions on instances with room
# (server/cluster.py), and an unready one would leave the load balancer for everything, reports and
# reconnects included; with every instance full, creating a session is a JSON 503 at_capacity.
async def health_live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "live", "instance": _state(request).cluster.instance_id})


async def health_ready(request: Request) -> JSONResponse:
    state = _state(request)
    if state.cluster.draining:
        status = "draining"
    else:
        status = "ready" if await _redis_ok(state) else "store_unavailable"
    return JSONResponse({"status": status, "instance": state.cluster.instance_id}, status_code=200 if status == "ready" else 503)


async def health_detail(request: Request) -> JSONResponse:
    state = _state(request)
    redis_ok = await _redis_ok(state)
    interview = state.modes.get("interview")
    body = {
        "status": "ok" if redis_ok else "degraded",
        "redis": redis_ok,
        "live_sessions": len(state.calls),
        "instance": state.cluster.instance_id,
        "draining": state.cluster.draining,
        "asr_model": state.settings.asr_model,
        "asr_queue_depth": state.engine.queue_depth,
        "llm": state.llm.name if state.llm is not None else None,
        "tts": isinstance(interview, InterviewServices) and interview.phrases.available,
        "intent": state.encoders.intents is not None,
    }
    return JSONResponse(body, status_code=200 if redis_ok else 503)


async def _redis_ok(state: AppState) -> bool:
    try:
        return await state.store.ping()
    except StoreUnavailable:
        return False


async def metrics(request: Request) -> Response:
    if _state(request).settings.internal_port and not auth_on(request):
        raise ApiError(403, "forbidden", "metrics are served on the internal port")
    require(request, "metrics")
    return await metrics_internal(request)


async def metrics_internal(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def admin_settings(request: Request) -> JSONResponse:
    require(request, "settings read")
    return JSONResponse(_state(request).settings.public())


async def reload_intent_heads(request: Request) -> JSONResponse:
    """The intent heads read again from intent_heads_dir and swapped in; calls go on (server/intent_reload.py)."""
    require(request, "intent heads reload")
    try:
        done = await _state(request).intent_reload.reload()
    except ReloadError as failed:
        await record_act(request, "intent_heads.reload", outcome=failed.code)
        raise ApiError(failed.status, failed.code, failed.message) from None
    await record_act(request, "intent_heads.reload", reloads=done["reloads"])
    return JSONResponse(done)

"""The HTTP side: session API, WebRTC signalling, health, and the static client.

    POST   /api/sessions                 {mode, role, difficulty} -> {session_id, token}
                                         (mode "assist" needs no role)
    POST   /api/sessions/{id}/offer      Bearer token, {sdp, type: "offer", tracks?} -> {sdp, type: "answer"}
                                         tracks (assist): {"<track id>": "agent" | "customer"}
    GET    /api/sessions/{id}            Bearer token -> session, finals, pace
    DELETE /api/sessions/{id}            Bearer token -> ends the session
    GET    /api/sessions/{id}/report     Bearer token -> the interview report (JSON)
    GET    /sessions/{id}/report         the report page (reads the token from the URL fragment)
    GET    /api/sessions/{id}/summary    Bearer token -> an assist call's summary (JSON)
    GET    /sessions/{id}/summary        the summary page (token from the URL fragment)
    GET    /healthz                      Redis and engine state
    GET    /metrics                      Prometheus metrics (server/metrics.py)
    GET    /                             the client (client/index.html and its files)

Every error is JSON: {"error": {"code": "...", "message": "..."}} with a 4xx/5xx
status, and no error ends the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from aiortc.sdp import SessionDescription
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agents.roles import DIFFICULTIES, INTENT_LABEL_SETS, MODES, ROLES
from models.asr import AsrEngine
from server.assist import AssistServices
from server.encoder_service import EncoderService
from server.errors import StartupError
from server.interview import InterviewServices
from server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.metrics import ServerMetrics
from server.pipeline import IntentOptions, ResumePoint
from server.speakers import SpeakerError, assign_speakers
from server.settings import Settings
from server.store import SessionRecord, SessionStore, StoreUnavailable, WriteBehind, connect
from server.webrtc import EVENTS_CHANNEL, LiveSession

log = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class Earshot:
    """Everything one server process shares: settings, store, the ASR engine, live calls."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        engine: AsrEngine,
        interview: Optional[InterviewServices] = None,
        encoders: Optional[EncoderService] = None,
        assist: Optional[AssistServices] = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.interview = interview
        self.encoders = encoders
        self.assist = assist
        self.live: dict[str, LiveSession] = {}
        self._draining: set[WriteBehind] = set()
        self.metrics = ServerMetrics(live_sessions=lambda: len(self.live), asr_queue_depth=lambda: engine.queue_depth)
        engine.observe(self.metrics.observe_decode)

    # --- helpers -----------------------------------------------------------------------
    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
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
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_json", "request body must be a JSON object") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_json", "request body must be a JSON object")
        return data

    async def authorised_session(self, request: Request) -> SessionRecord:
        session_id = request.path_params["session_id"]
        record = await self.store.get(session_id)
        if record is None:
            raise ApiError(404, "unknown_session", f"no session {session_id}")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing_token", "send the session token as 'Authorization: Bearer <token>'")
        if not SessionStore.token_matches(record, token.strip()):
            raise ApiError(401, "bad_token", "the token does not belong to this session")
        return record

    def session_closed(self, session: LiveSession) -> None:
        if self.live.get(session.session_id) is session:
            del self.live[session.session_id]
        if session.writer.pending:
            self._draining.add(session.writer)  # keep retrying after the call ended
        self._draining = {w for w in self._draining if w.pending}

    # --- endpoints ----------------------------------------------------------------------
    async def create_session(self, request: Request) -> JSONResponse:
        data = await self.read_json(request)
        mode = data.get("mode", "interview")
        role = data.get("role", "" if mode == "assist" else None)
        difficulty = data.get("difficulty", "medium")
        if mode not in MODES:
            raise ApiError(400, "bad_mode", f"mode must be one of: {', '.join(MODES)}")
        if role not in ROLES and not (mode == "assist" and role == ""):  # an assist call needs no role
            raise ApiError(400, "bad_role", f"role must be one of: {', '.join(ROLES)}")
        if difficulty not in DIFFICULTIES:
            raise ApiError(400, "bad_difficulty", f"difficulty must be one of: {', '.join(DIFFICULTIES)}")
        record, token = await self.store.create(mode, role, difficulty)
        return JSONResponse({"session_id": record.session_id, "token": token}, status_code=201)

    async def offer(self, request: Request) -> JSONResponse:
        data = await self.read_json(request)
        record = await self.authorised_session(request)
        sdp = data.get("sdp")
        if data.get("type") != "offer" or not isinstance(sdp, str):
            raise ApiError(400, "bad_offer", 'body must be {"sdp": "<offer SDP>", "type": "offer"}')
        parsed = check_offer_sdp(sdp)
        speakers: dict[str, str] = {}
        if record.mode == "assist":
            try:
                speakers = assign_speakers(parsed, data.get("tracks"))
            except SpeakerError as exc:
                raise ApiError(400, exc.code, str(exc)) from None
        elif data.get("tracks") is not None:
            raise ApiError(400, "bad_tracks", "labelled tracks are for assist sessions only")
        existing = self.live.get(record.session_id)
        if existing is not None and not existing.closed:
            raise ApiError(409, "session_live", "this session already has a live connection; DELETE it or wait")
        if record.state == "ended":
            raise ApiError(409, "session_ended", "this session has ended; create a new one")

        resumed_finals = await self.store.final_count(record.session_id)
        resume = ResumePoint(
            audio_s=record.audio_s,
            next_utterance_id=record.next_utterance_id,
            next_final_seq=resumed_finals + 1,
        )
        session = LiveSession(
            record,
            resume,
            resumed_finals,
            self.engine,
            self.settings,
            writer_factory=lambda on_outage: WriteBehind(self.store, record.session_id, on_outage),
            on_closed=self.session_closed,
            interview_services=self.interview,
            intents=self.intent_options(record.mode),
            speakers=speakers,
            assist_services=self.assist,
            observe=self.metrics.observe,
        )
        self.live[record.session_id] = session
        try:
            answer = await session.answer(sdp)
        except Exception as exc:  # aiortc rejects what it cannot negotiate (codecs, DTLS, ...)
            await session.close("offer rejected")
            raise ApiError(400, "bad_offer", f"cannot negotiate this offer: {exc}") from None
        return JSONResponse({"sdp": answer.sdp, "type": answer.type})

    def intent_options(self, mode: str) -> Optional[IntentOptions]:
        label_set = INTENT_LABEL_SETS.get(mode)
        if label_set is None or self.encoders is None or self.encoders.intents is None:
            return None
        return IntentOptions(self.encoders.classify, label_set, partials=self.settings.intent_partials)

    async def get_session(self, request: Request) -> JSONResponse:
        record = await self.authorised_session(request)
        finals = await self.store.finals(record.session_id)
        live = self.live.get(record.session_id)
        body = {**record.public(), "live": live is not None and not live.closed, "finals": finals, "pace": record.pace}
        return JSONResponse(body)

    async def delete_session(self, request: Request) -> JSONResponse:
        record = await self.authorised_session(request)
        live = self.live.get(record.session_id)
        if live is not None:
            await live.close("ended by the caller", state="ended")
        await self.store.update(record.session_id, state="ended")  # also when the call had already closed
        count = await self.store.final_count(record.session_id)
        body: dict[str, Any] = {"session_id": record.session_id, "state": "ended", "finals": count}
        if record.mode == "assist":
            body["summary_url"] = f"/sessions/{record.session_id}/summary"  # stored before this answer
        return JSONResponse(body)

    async def report(self, request: Request) -> JSONResponse:
        record = await self.authorised_session(request)
        if record.mode != "interview" or self.interview is None:
            raise ApiError(404, "no_report", "only interview sessions have a report")
        report = await self.interview.reports.for_session(record)
        if report is None:
            raise ApiError(404, "no_report", "no question has been asked in this session yet")
        return JSONResponse(report)

    async def report_page(self, request: Request) -> FileResponse:
        # The page itself is public; it fetches the JSON with the token from its URL fragment.
        return FileResponse(CLIENT_DIR / "report.html")

    async def summary(self, request: Request) -> JSONResponse:
        record = await self.authorised_session(request)
        if record.mode != "assist" or self.assist is None:
            raise ApiError(404, "no_summary", "only assist sessions have a call summary")
        live = self.live.get(record.session_id)
        summary = live.assist_summary() if live is not None and not live.closed else None
        if summary is None:
            summary = await self.store.summary(record.session_id)
        if summary is None:
            raise ApiError(404, "no_summary", "this call has not started yet")
        return JSONResponse(summary)

    async def summary_page(self, request: Request) -> FileResponse:
        return FileResponse(CLIENT_DIR / "summary.html")

    async def health(self, request: Request) -> JSONResponse:
        try:
            redis_ok = await self.store.ping()
        except StoreUnavailable:
            redis_ok = False
        body = {
            "status": "ok" if redis_ok else "degraded",
            "redis": redis_ok,
            "live_sessions": len(self.live),
            "asr_model": self.settings.asr_model,
            "asr_queue_depth": self.engine.queue_depth,
            "llm": self.interview.llm.name if self.interview and self.interview.llm else None,
            "tts": bool(self.interview and self.interview.phrases.available),
            "intent": bool(self.encoders and self.encoders.intents),
        }
        return JSONResponse(body, status_code=200 if redis_ok else 503)

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close("server shutting down") for s in list(self.live.values())))
        for writer in list(self._draining):
            await writer.flush(2.0)
            await writer.stop()


def check_offer_sdp(sdp: str) -> SessionDescription:
    """400 for an offer we can tell is unusable before aiortc sees it; else the parsed offer."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:
        raise ApiError(400, "bad_sdp", "the offer is not valid SDP") from None
    kinds = [media.kind for media in parsed.media]
    if not kinds:
        raise ApiError(400, "bad_sdp", "the offer has no media sections")
    if "audio" not in kinds:
        raise ApiError(400, "no_audio", "the offer has no audio track; add the microphone before creating it")
    if "application" not in kinds:
        raise ApiError(
            400,
            "no_data_channel",
            f"the offer has no data channel; create one named '{EVENTS_CHANNEL}' before the offer",
        )
    return parsed


def create_app(earshot: Earshot) -> Starlette:
    def endpoint(method):
        async def handle(request: Request) -> JSONResponse:
            try:
                return await method(request)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message)
            except StoreUnavailable as exc:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return error_response(503, "store_unavailable", "session storage (Redis) is unreachable; try again")

        return handle

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if earshot.interview is not None:
            await earshot.interview.warm()  # common phrases synthesised before the first caller
        if earshot.assist is not None:
            await earshot.assist.warm()  # knowledge and topics embedded before the first call
        loop_watch = asyncio.ensure_future(earshot.metrics.watch_event_loop())
        yield
        loop_watch.cancel()
        await earshot.close_all()
        if earshot.interview is not None:
            await earshot.interview.close()
        if earshot.encoders is not None:
            earshot.encoders.close()
        await earshot.store.close()

    routes = [
        Route("/api/sessions", endpoint(earshot.create_session), methods=["POST"]),
        Route("/api/sessions/{session_id}/offer", endpoint(earshot.offer), methods=["POST"]),
        Route("/api/sessions/{session_id}", endpoint(earshot.get_session), methods=["GET"]),
        Route("/api/sessions/{session_id}", endpoint(earshot.delete_session), methods=["DELETE"]),
        Route("/api/sessions/{session_id}/report", endpoint(earshot.report), methods=["GET"]),
        Route("/sessions/{session_id}/report", earshot.report_page, methods=["GET"]),
        Route("/api/sessions/{session_id}/summary", endpoint(earshot.summary), methods=["GET"]),
        Route("/sessions/{session_id}/summary", earshot.summary_page, methods=["GET"]),
        Route("/healthz", endpoint(earshot.health), methods=["GET"]),
        Route("/metrics", earshot.metrics_page, methods=["GET"]),
        Mount("/", StaticFiles(directory=CLIENT_DIR, html=True), name="client"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.earshot = earshot
    return app


def run_server(settings: Settings) -> int:
    """Start Redis (or connect), load the model, serve until interrupted."""
    import uvicorn

    from server.ice import restrict_ice_to_loopback
    from server.pipeline import asr_config
    from server.redis_server import PrivateRedis, RedisStartError

    private: Optional[PrivateRedis] = None
    url = settings.redis_url
    if not url:
        private = PrivateRedis(settings.data_dir)
        try:
            url = private.start()
        except RedisStartError as exc:
            raise StartupError(str(exc)) from None
        log.info("private Redis at %s", url)
    try:
        asyncio.run(_check_store(url))
        if settings.ice_loopback_only:
            restrict_ice_to_loopback()
        engine = AsrEngine.load(asr_config(settings))
        log.info("ASR model %s loaded", settings.asr_model)
        store = SessionStore(connect(url), settings.session_ttl_s)
        encoders = EncoderService.load(settings)
        log.info("sentence encoder loaded; intent head %s", "on" if encoders.intents else "off")
        interview = InterviewServices.load(settings, store, encoders)
        log.info("interviewer ready: LLM %s, voice %s", interview.llm.name if interview.llm else "none",
                 "on" if interview.phrases.available else "off")
        assist = AssistServices.load(settings, store, encoders, interview.llm)
        app = create_app(Earshot(settings, store, engine, interview, encoders, assist))
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
        log.info("Earshot listening on http://%s:%d", settings.host, settings.port)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it; with this handler that
        # becomes SystemExit, so the finally below still stops the private Redis.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.Server(config).run()
        engine.close()
    finally:
        if private is not None:
            private.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _check_store(url: str) -> None:
    store = SessionStore(connect(url), ttl_s=1)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach Redis at {url}: {exc.__cause__ or exc}") from None
    finally:
        await store.close()

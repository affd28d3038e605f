"""The HTTP API's session endpoints: sessions, WebRTC signalling, reports, summaries (health and metrics: operations_api.py).

Every endpoint reads what the process shares from `request.app.state.earshot`
(an `AppState`). A request it refuses raises `ApiError`; server/app.py turns
that, and anything else that goes wrong, into a JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Optional

from aiortc import RTCSessionDescription
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from earshot.agents.roles import DIFFICULTIES, ROLES
from earshot.models.asr import AsrEngine
from earshot.models.llm import LlmBackend
from earshot.models.turn_model import EndOfTurnModel
from earshot.server.abandoned_calls import forget as forget_unended, note_unended, noted
from earshot.server.access import require
from earshot.server.analytics_stream import MODES as ANALYSED_MODES, CallEnded, publish
from earshot.server.audit import AuditLog
from earshot.server.audit_trail import audited_session, record_act
from earshot.server.auth import Authenticator
from earshot.server.calls import LiveCalls
from earshot.server.cluster import Cluster
from earshot.server.client_files import client_dir
from earshot.server.configs import redacted_kinds
from earshot.server.encoder_service import EncoderService
from earshot.server.errors import ApiError
from earshot.server.facts_store import FactsStore
from earshot.server.feedback_api import Feedback, stored_corrections
from earshot.server.feedback_store import FeedbackStore
from earshot.server.forwarding import Forwarder
from earshot.server.intent_reload import IntentReloader
from earshot.server.intent_stage import IntentOptions
from earshot.server.limits import Limits, at_capacity
from earshot.server.metrics import ServerMetrics
from earshot.server.modes import MODE_KINDS, ModeKind, ModeServices
from earshot.server.modes.assist import AssistMode
from earshot.server.modes.interview import InterviewServices
from earshot.server.offer_checks import check_offer_sdp
from earshot.server.pipeline import ResumePoint
from earshot.server.recording import CallRecording
from earshot.server.recording_files import erase_recording
from earshot.server.redaction_stage import RedactionOptions, Redacts
from earshot.server.request_checks import authorised_session, purge_requested, read_json
from earshot.server.settings import Settings
from earshot.server.speakers import SpeakerError, assign_speakers
from earshot.server.routing import answered_by_holder, forwarded, offer_url
from earshot.server.store import (
    SessionRecord, SessionStore, StoreUnavailable, guarded, is_session_id, new_session_id,
)
from earshot.server.turn import IceServers
from earshot.server.write_behind import WriteBehind
from earshot.server.webrtc import LiveSession

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """Everything one server process shares: settings, store, models, call modes, live calls, metrics."""

    settings: Settings
    store: SessionStore
    engine: AsrEngine
    encoders: EncoderService
    llm: Optional[LlmBackend]
    modes: dict[str, ModeServices]  # keyed like MODE_KINDS
    metrics: ServerMetrics
    calls: LiveCalls
    turn: Optional[IceServers] = None  # the sessions' STUN/TURN servers; None = from settings
    auth: Optional[Authenticator] = None  # None: auth none, every caller anonymous
    redactor: Optional[Redacts] = None  # needed when any mode redacts (the settings' redact_*)
    end_of_turn: Optional[EndOfTurnModel] = None  # needed with endpointing model (server/endpointing.py)
    limits: Limits = field(init=False)  # from the settings
    audit: AuditLog = field(init=False)  # on the store's connection
    cluster: Cluster = field(init=False)  # this instance among those on the store's Redis
    forwarder: Forwarder = field(init=False)  # the hop to another instance (server/forwarding.py)
    facts: FactsStore = field(init=False)  # ended calls' facts, for the calls page (server/calls_api.py)
    feedback: Feedback = field(init=False)  # the agents' intent corrections (server/feedback_api.py)
    intent_reload: IntentReloader = field(init=False)  # new intent heads, on SIGHUP or the admin call

    def __post_init__(self) -> None:
        if self.turn is None:
            self.turn = IceServers.from_settings(self.settings)
        self.limits = Limits.from_settings(self.settings)
        self.audit = AuditLog(self.store.client, self.settings.audit_retention_s)
        self.cluster = Cluster(self.store.client, self.settings, busy=lambda: self.calls.busy, held=self.calls.held)
        self.cluster.on_lost = self._lost_call
        self.forwarder = Forwarder(self.cluster.instance_id)
        self.facts = FactsStore(self.store.client, self.store.sealer, self.settings.retention_reports_s)
        self.feedback = Feedback(FeedbackStore(self.store.client, self.store.retention, self.store.sealer))
        self.intent_reload = IntentReloader(self.settings, self.encoders)
        if self.redactor is None and any(redacted_kinds(self.settings, name) for name in MODE_KINDS):
            raise ValueError("the settings redact transcripts but no redactor was loaded")
        if self.end_of_turn is None and self.settings.endpointing == "model":
            raise ValueError("endpointing model needs the end-of-turn model loaded")

    def call_closed(self, call: LiveSession) -> None:
        """A call's teardown is done: another instance may take the session now (once its writes are in)."""
        self.calls.closed(call)
        session_id = call.session_id
        if call.abandoned and noted(self.settings, call.record.mode):  # due that long after the close, unless live or DELETEd
            self.calls.spawn(_quietly(note_unended(self.store.client, session_id)))
        # Not while its writes wait for Redis, nor when a new call of the session is being set up here.
        if not call.writer.pending and self.calls.get(session_id) is None and not self.calls.offer_in_progress(session_id):
            self.calls.spawn(self.cluster.release(session_id))
        self.cluster.beat_soon()

    async def _lost_call(self, session_id: str) -> None:
        call = self.calls.get(session_id)
        if call is not None:
            await call.close_with_notice("call_taken_over", "another server instance holds this call now; reconnect")

    def intent_options(self, kind: ModeKind) -> Optional[IntentOptions]:
        if kind.intent_label_set is None or self.encoders.intents is None:
            return None
        return IntentOptions(self.encoders.classify, kind.intent_label_set, partials=self.settings.intent_partials)

    def redaction_options(self, kind: ModeKind) -> Optional[RedactionOptions]:
        kinds = redacted_kinds(self.settings, kind.name)
        if not kinds or self.redactor is None:
            return None
        return RedactionOptions(self.redactor, kinds, show_raw=kind.name == "assist" and self.settings.assist_overlay_raw)


def _state(request: Request) -> AppState:
    return request.app.state.earshot


# --- sessions -----------------------------------------------------------------------------
async def create_session(request: Request) -> JSONResponse:
    state = _state(request)
    state.limits.check_rate(state.limits.sessions, request)
    data = await read_json(request)
    mode = data.get("mode", "interview")
    kind = MODE_KINDS.get(mode) if isinstance(mode, str) else None
    if kind is None:
        raise ApiError(400, "bad_mode", f"mode must be one of: {', '.join(MODE_KINDS)}")
    role = data.get("role", None if kind.needs_role else "")
    if not isinstance(role, str) or (role not in ROLES and not (not kind.needs_role and role == "")):
        raise ApiError(400, "bad_role", f"role must be one of: {', '.join(ROLES)}")
    difficulty = data.get("difficulty", "medium")
    if not isinstance(difficulty, str) or difficulty not in DIFFICULTIES:
        raise ApiError(400, "bad_difficulty", f"difficulty must be one of: {', '.join(DIFFICULTIES)}")
    identity = require(request, f"create {mode}")
    owner, team = (identity.name, identity.team) if identity is not None else ("", "")
    state.limits.admit_session()
    session_id = new_session_id()
    with state.limits.pending.creating():
        placement = await state.cluster.place(session_id, state.store.retention.pending_s)
        if placement is None:
            raise at_capacity("every server instance is at its capacity for live calls; try again shortly")
        try:
            record, token = await state.store.create(
                mode, role, difficulty, owner=owner, team=team, session_id=session_id, placed_on=placement.instance_id,
            )
        except StoreUnavailable:  # nothing half-made: the placement goes too, if Redis lets it
            await _quietly(state.cluster.unplace(placement.instance_id, session_id))
            raise
    state.limits.pending.add(record.session_id)  # until its offer, or until its key lapses
    ice_servers = state.turn.entries(record.session_id)  # TURN credentials named after the session, not the caller
    return JSONResponse({"session_id": record.session_id, "token": token, "ice_servers": ice_servers}, status_code=201)


async def offer(request: Request) -> JSONResponse:
    state = _state(request)
    state.limits.check_rate(state.limits.offers, request)
    data = await read_json(request)
    record = await authorised_session(request, "session offer")
    sdp = data.get("sdp")
    if data.get("type") != "offer" or not isinstance(sdp, str):
        raise ApiError(400, "bad_offer", 'body must be {"sdp": "<offer SDP>", "type": "offer"}')
    parsed = check_offer_sdp(sdp)
    kind = MODE_KINDS[record.mode]
    speakers: dict[str, str] = {}
    if kind.speakers:
        try:
            speakers = assign_speakers(parsed, data.get("tracks"), kind.speakers)
        except SpeakerError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
    elif data.get("tracks") is not None:
        raise ApiError(400, "bad_tracks", f"labelled tracks are for {', '.join(k.name for k in MODE_KINDS.values() if k.speakers)} sessions only")
    if not state.forwarder.was_forwarded(request):  # else the instance that sent it on decided: answer here
        there = await offer_url(state, record)
        if there is not None:
            try:
                answer = await forwarded(state, request, there.url, to_holder=there.holds_call)
            except ApiError as exc:
                if there.holds_call or exc.code != "instance_unreachable" or state.cluster.draining:
                    raise
                answer = None  # the instance it was placed on is gone, and its beat has not lapsed yet
            if there.holds_call or state.cluster.draining or (answer is not None and answer.status_code != 503):
                return answer
            # The instance it was placed on cannot take it now (gone, full, or without Redis): this one answers.
    return await _offer_here(state, record, kind, sdp, speakers)


async def _offer_here(
    state: AppState, record: SessionRecord, kind: ModeKind, sdp: str, speakers: dict[str, str]
) -> JSONResponse:
    # From here to `offering` nothing awaits: of simultaneous offers to one session, one goes ahead.
    if state.calls.offer_in_progress(record.session_id):
        raise ApiError(409, "offer_in_progress", "another offer for this session is being answered")
    if state.calls.is_live(record.session_id):
        raise ApiError(409, "session_live", "this session already has a live connection; DELETE it or wait")
    if record.state == "ended":
        raise ApiError(409, "session_ended", "this session has ended; create a new one")
    if time.time() >= state.store.retention.live_until(record.created_at):
        # Where it would resume (audio clock, utterance numbers, the interview's state) is deleted by now.
        raise ApiError(409, "session_expired", "this session's live state has expired (retention_live_s); create a new one")
    state.limits.admit_call(state.calls.busy)
    with state.calls.offering(record.session_id):
        # Of two instances answering offers for one session at once, one holds the call (server/cluster.py).
        if not await state.cluster.claim(record.session_id):
            raise ApiError(409, "session_live", "this session already has a live connection; DELETE it or wait")
        try:
            # Read again, now that the call is held: a DELETE, or the analytics sweep of calls closed without
            # one (which ends no session whose call is held), may have ended the session since it was read above.
            fresh = await state.store.get(record.session_id)
            if fresh is None or fresh.state == "ended" or state.calls.is_ending(record.session_id):
                raise ApiError(409, "session_ended", "this session has ended; create a new one")
            answer = await _answer(state, fresh, kind, sdp, speakers)
        except Exception:
            await _quietly(state.cluster.release(record.session_id))  # before the answer: nothing holds it now
            raise
        finally:
            state.cluster.beat_soon()
    state.limits.pending.remove(record.session_id)  # the call's first write gave its record its full retention
    for instance_id in {state.cluster.instance_id, record.placed_on} - {""}:
        await _quietly(state.cluster.unplace(instance_id, record.session_id))
    if noted(state.settings, record.mode):  # live: analysed later even if this instance dies (abandoned_calls.py)
        await _quietly(note_unended(state.store.client, record.session_id))
    return JSONResponse({"sdp": answer.sdp, "type": answer.type})


async def _quietly(step: Awaitable[None]) -> None:
    """A clean-up that may fail with Redis away: what it would remove lapses by itself."""
    try:
        await step
    except StoreUnavailable:
        pass


async def _answer(
    state: AppState, record: SessionRecord, kind: ModeKind, sdp: str, speakers: dict[str, str]
) -> RTCSessionDescription:
    """A new call for the session, answering `sdp`: one peer connection per session at a time."""
    previous = state.calls.get(record.session_id)
    if previous is not None:  # still closing: its last finals and state are written before the next call counts them
        await asyncio.shield(previous.close("replaced by a new offer"))
    resumed_finals = await state.store.final_count(record.session_id)
    if record.audio_s > 0:  # an earlier call of the session got audio: this one resumes it
        state.metrics.count_reconnect()
    resume = ResumePoint(
        audio_s=record.audio_s, next_utterance_id=record.next_utterance_id, next_final_seq=resumed_finals + 1
    )
    call = LiveSession(
        record,
        resume,
        resumed_finals,
        state.engine,
        state.settings,
        writer_factory=lambda on_outage: WriteBehind(state.store, record.session_id, on_outage),
        on_closed=state.call_closed,
        open_mode=state.modes[record.mode].open,
        observe=state.metrics.observe,
        intents=state.intent_options(kind),
        redaction=state.redaction_options(kind),
        speakers=speakers,
        # Its own TURN credentials, minted now: the caller's came with the session.
        ice_servers=state.turn.entries(record.session_id),
        end_of_turn=state.end_of_turn,
        hold_unfinished_turns=kind.hold_unfinished_turns,
        instance=state.cluster.instance_id,
        recording=(lambda tracks: CallRecording(
            state.store.sealer, state.settings, record.session_id, record.mode, record.created_at, tracks,
            resume.audio_s, record.recording,
        )) if state.settings.recording else None,
    )
    state.calls.add(call)
    try:
        return await call.answer(sdp)
    except Exception as exc:  # aiortc rejects what it cannot negotiate (codecs, DTLS, ...)
        log.warning("session %s: offer rejected: %r", record.session_id, exc)
        await call.close("offer rejected")
        raise ApiError(400, "bad_offer", "cannot negotiate this offer") from None


async def get_session(request: Request) -> JSONResponse:
    state = _state(request)
    record = await audited_session(request, "session read", "transcript.read")
    finals = await state.store.finals(record.session_id)
    live = state.calls.is_live(record.session_id) or (await state.cluster.holder(record.session_id))[0] is not None
    await record_act(request, "transcript.read", record.session_id, finals=len(finals))
    return JSONResponse({**record.public(), "live": live, "finals": finals, "pace": record.pace})


async def delete_session(request: Request) -> Response:
    """Ends the call; with ?purge=true also deletes every key of the session at once. Extends no expiry."""
    state = _state(request)
    purge = purge_requested(request)
    action = "session.purge" if purge else "session.delete"
    record = await audited_session(request, "session purge" if purge else "session delete", action)
    elsewhere = await answered_by_holder(state, request, record.session_id)
    if elsewhere is not None:  # the call is live on another instance: it ends it there
        return elsewhere
    if state.calls.offer_in_progress(record.session_id):  # its call would go live on the ended session
        raise ApiError(409, "offer_in_progress", "an offer for this session is being answered; DELETE after it")
    with state.calls.ending(record.session_id):  # taken with no await since the check above
        await end_call(state, record.session_id)
        if purge:  # after the call's last writes; any write still to come finds no session and writes nothing
            deleted = await state.store.purge(record)
            await asyncio.to_thread(erase_recording, state.settings, record.session_id)
        else:
            await state.store.end(record.session_id)  # also when the call had already closed
            if state.settings.analytics_enabled and record.mode in ANALYSED_MODES and record.state != "ended":
                # its facts are due (server/analytics_worker.py)
                await guarded(lambda: publish(state.store.client, CallEnded(record.session_id, record.mode, time.time())))
        await _quietly(forget_unended(state.store.client, record.session_id))  # ended or purged: not abandoned
    if purge:
        await record_act(request, action, record.session_id, keys_deleted=deleted)
        return JSONResponse({"session_id": record.session_id, "state": "purged", "keys_deleted": deleted})
    count = await state.store.final_count(record.session_id)
    await record_act(request, action, record.session_id, finals=count)
    body: dict[str, Any] = {"session_id": record.session_id, "state": "ended", "finals": count}
    if record.mode == "assist":
        body["summary_url"] = f"/sessions/{record.session_id}/summary"  # stored before this answer
    return JSONResponse(body)


async def end_call(state: AppState, session_id: str, reason: str = "ended by the caller") -> None:
    """End the session's call in this process, if it has one, once its last finals and state are written."""
    call = state.calls.get(session_id)
    state.limits.pending.remove(session_id)
    if call is not None:
        await call.close(reason, state="ended")  # also when it was already closing


# --- after the call -------------------------------------------------------------------------
async def report(request: Request) -> JSONResponse:
    state = _state(request)
    record = await audited_session(request, "report read", "report.read")
    interview = state.modes.get("interview")
    if record.mode != "interview" or not isinstance(interview, InterviewServices):
        raise ApiError(404, "no_report", "only interview sessions have a report")
    found = await interview.reports.for_session(record)
    if found is None:
        raise ApiError(404, "no_report", "no question has been asked in this session yet")
    await record_act(request, "report.read", record.session_id)
    return JSONResponse(found)


async def summary(request: Request) -> Response:
    state = _state(request)
    record = await audited_session(request, "summary read", "summary.read")
    if record.mode != "assist":
        raise ApiError(404, "no_summary", "only assist sessions have a call summary")
    elsewhere = await answered_by_holder(state, request, record.session_id)
    if elsewhere is not None:  # live on another instance: its summary so far is there
        return elsewhere
    call = state.calls.get(record.session_id)
    live = call.mode if call is not None and not call.closed else None
    found = live.summary() if isinstance(live, AssistMode) else await state.store.summary(record.session_id)
    if found is None:
        raise ApiError(404, "no_summary", "this call has not started yet")
    if live is None:  # a recorded call re-scored after it ended: both transcripts
        rescored = await state.store.rescored(record.session_id)
        if rescored is not None:
            found = {**found, "rescored": rescored}
    # The agents' intent corrections as they are now (made during the call or after it), read at each request.
    found = {**found, "corrections": await stored_corrections(state.feedback.store, record.session_id)}
    await record_act(request, "summary.read", record.session_id)
    return JSONResponse(found)


async def report_page(request: Request) -> FileResponse:
    # The page itself is public; it fetches the JSON with the token from its URL fragment.
    return _session_page(request, "report.html")


async def summary_page(request: Request) -> FileResponse:
    return _session_page(request, "summary.html")


def _session_page(request: Request, name: str) -> FileResponse:
    if not is_session_id(request.path_params["session_id"]):
        raise ApiError(404, "unknown_session", "no such session")
    return FileResponse(client_dir() / name)

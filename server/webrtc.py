"""One live WebRTC call: the caller's audio in, events out on the `events` data channel.

    browser mic --Opus/RTP--> aiortc track --> FrameResampler (16 kHz mono)
        --> SessionPipeline --> events --> data channel `events` (+ finals to Redis)
                                  \--> SessionInterview (interview mode) --> agent events
                                        + the interviewer's voice on an outbound audio track
                                  \--> SessionAssist (assist mode) --> assist updates

An assist call has two labelled tracks (agent, customer), each with its own
pipeline; a single-speaker call uses the first audio track it is sent.

Events produced before the data channel opens wait in a small buffer, so the
client sees every event in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Optional

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from models.asr import AsrEngine
from models.audio import FrameResampler
from server import events
from server.ice import rtc_configuration
from server.assist import AssistServices, SessionAssist
from server.interview import InterviewServices, SessionInterview
from server.pipeline import IntentOptions, ResumePoint, SessionPipeline, final_numbers
from server.settings import Settings
from server.store import SessionRecord, WriteBehind

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "events"
MAX_BUFFERED_EVENTS = 1000
FINAL_FLUSH_TIMEOUT_S = 3.0
PROGRESS_EVERY_FRAMES = 50  # 20 ms frames: save the audio clock about once a second


# aiortc's audio receiver holds 4 frames (80 ms) before releasing one, to smooth
# playout. Nothing here plays the caller's audio out: the VAD and Whisper take
# frames as they come, so that buffer would only delay every partial, final
# and barge-in by 80 ms. One frame is the least it can hold (it releases a
# frame when the next one starts). Packet order and loss handling stay aiortc's.
AUDIO_PREFETCH_FRAMES = 1


def release_audio_without_prefetch(receiver: RTCRtpReceiver) -> None:
    attribute = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attribute, None)
    if not isinstance(current, JitterBuffer):  # a future aiortc may name it otherwise: keep its default
        log.warning("aiortc's audio jitter buffer not found; keeping its 80 ms prefetch")
        return
    setattr(receiver, attribute, JitterBuffer(capacity=current.capacity, prefetch=AUDIO_PREFETCH_FRAMES))


class LiveSession:
    def __init__(
        self,
        record: SessionRecord,
        resume: ResumePoint,
        resumed_finals: int,
        engine: AsrEngine,
        settings: Settings,
        writer_factory: Callable[[Callable[[bool], Awaitable[None]]], WriteBehind],
        on_closed: Callable[["LiveSession"], None],
        interview_services: Optional[InterviewServices] = None,
        intents: Optional[IntentOptions] = None,
        speakers: Optional[dict[str, str]] = None,
        assist_services: Optional[AssistServices] = None,
        observe: Callable[[events.Event], None] = lambda event: None,
    ) -> None:
        self.record = record
        self.session_id = record.session_id
        self._settings = settings
        self._resumed_finals = resumed_finals
        self._on_closed = on_closed
        self._observe = observe  # the server's metrics see every pipeline event
        self._writer = writer_factory(self._on_store_outage)
        # SDP mid -> speaker label; a single-speaker call has one pipeline, speaker "".
        self._speakers = dict(speakers or {})
        seq_numbers = final_numbers(resume.next_final_seq)
        self._pipelines = {
            speaker: SessionPipeline(
                self.session_id, engine, settings, self._emit, resume, speaker, intents, seq_numbers
            )
            for speaker in (sorted(set(self._speakers.values())) or [""])
        }
        self._pc = RTCPeerConnection(rtc_configuration(settings.ice_server_urls))
        send = lambda event: self._send(event.to_json())  # noqa: E731
        self._interview: Optional[SessionInterview] = None
        if record.mode == "interview" and interview_services is not None:
            self._interview = SessionInterview(
                interview_services,
                record,
                send=send,
                audio_clock=self.audio_s,
                save_fields=self._writer.fields,
                intents_follow_finals=intents is not None,
            )
        self._assist: Optional[SessionAssist] = None
        if record.mode == "assist" and assist_services is not None:
            self._assist = SessionAssist(
                assist_services, record, send=send, audio_clock=self.audio_s, intents_follow_finals=intents is not None
            )
        self._channel: Optional[RTCDataChannel] = None
        self._backlog: deque[str] = deque(maxlen=MAX_BUFFERED_EVENTS)
        self._audio_tasks: dict[str, asyncio.Task] = {}
        self._watchdog: Optional[asyncio.Task] = None
        self._closing: Optional[asyncio.Task] = None
        self._end_state = "created"
        self._wire_peer_connection()

    @property
    def closed(self) -> bool:
        return self._closing is not None

    # --- signalling ---------------------------------------------------------------
    async def answer(self, offer_sdp: str) -> RTCSessionDescription:
        """Apply the caller's offer; returns the answer with every ICE candidate in it."""
        self._writer.start()
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "audio":
                release_audio_without_prefetch(transceiver.receiver)
        if self._interview is not None:
            # Rides on the caller's audio transceiver (sendrecv), so no renegotiation is needed.
            self._pc.addTrack(self._interview.voice.track)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        self._writer.fields(state="live")
        self._watchdog = asyncio.ensure_future(self._close_if_never_connected())
        return self._pc.localDescription

    def _wire_peer_connection(self) -> None:
        pc = self._pc

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != EVENTS_CHANNEL:
                return
            self._channel = channel
            self._send_now(self._ready_event().to_json())
            while self._backlog:
                self._send_now(self._backlog.popleft())
            if self._interview is not None:
                self._interview.start()  # the caller can now see and hear the interviewer

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio":
                return
            mid = next((t.mid for t in self._pc.getTransceivers() if t.receiver.track is track), None)
            speaker = self._speakers.get(mid or "", "")
            if speaker in self._pipelines and speaker not in self._audio_tasks:
                pipeline = self._pipelines[speaker]
                self._audio_tasks[speaker] = asyncio.ensure_future(self._consume_audio(track, pipeline))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.session_id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self.close("connection " + pc.connectionState)

    def _ready_event(self) -> events.Ready:
        return events.Ready(
            self.session_id,
            mode=self.record.mode,
            role=self.record.role,
            difficulty=self.record.difficulty,
            pace_min_wps=self._settings.pace_min_wps,
            pace_max_wps=self._settings.pace_max_wps,
            resumed_finals=self._resumed_finals,
            speakers=[speaker for speaker in self._pipelines if speaker],
        )

    # --- media ---------------------------------------------------------------------------
    def audio_s(self) -> float:
        """The session's audio clock: the furthest any of its tracks has got."""
        return max(pipeline.audio_s for pipeline in self._pipelines.values())

    async def _consume_audio(self, track: MediaStreamTrack, pipeline: SessionPipeline) -> None:
        resample = FrameResampler()
        frames = 0
        # A browser sends audio frames all the time, silence and muted included. A track that
        # goes quiet means the caller vanished (ICE consent would notice only after ~30 s) or
        # never meant to stream: either way the call's decoder, pipeline and Redis writer go.
        # Before ICE connects, the connect watchdog is the one that decides.
        timeout = self._settings.media_timeout_s
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), timeout)
                except asyncio.TimeoutError:
                    if self._pc.connectionState in ("new", "connecting"):
                        continue
                    self._on_no_media(timeout)
                    break
                await pipeline.push(resample(frame))
                frames += 1
                if frames % PROGRESS_EVERY_FRAMES == 0:
                    self._save_progress()  # coalesced: at most one small write a second
        except MediaStreamError:
            pass  # the caller hung up: the track ended
        finally:
            # Whatever the reason the audio stopped, the utterance in progress gets its final.
            await pipeline.close()
            self._save_progress()

    def _on_no_media(self, waited_s: float) -> None:
        message = f"no audio received for {waited_s:.0f} s; closing the call"
        log.warning("session %s: %s", self.session_id, message)
        self._send(events.Error(self.session_id, code="no_media", message=message).to_json())
        self.close("no audio")

    # --- events out ----------------------------------------------------------------------
    async def _emit(self, event: events.Event) -> None:
        if isinstance(event, events.Final):
            await self._writer.final_write_through(event.seq, event.to_dict(), self._progress())
        elif isinstance(event, events.Pace) and event.final:
            self._writer.fields(pace=event.to_dict())
        self._send(event.to_json())
        self._observe(event)
        if self._interview is not None:
            self._interview.on_event(event)
        if self._assist is not None:
            self._assist.on_event(event)

    def _progress(self) -> dict[str, float | int]:
        """Where a reconnect resumes: the audio clock and the next utterance number."""
        next_utterance = max(pipeline.next_utterance_id for pipeline in self._pipelines.values())
        return {"audio_s": round(self.audio_s(), 3), "next_utterance_id": next_utterance}

    def _save_progress(self) -> None:
        self._writer.fields(**self._progress())

    def _send(self, message: str) -> None:
        if self._channel is None or self._channel.readyState != "open":
            self._backlog.append(message)
            return
        self._send_now(message)

    def _send_now(self, message: str) -> None:
        try:
            self._channel.send(message)
        except Exception as exc:  # channel closing under us: the event is in Redis if it mattered
            log.debug("session %s: send failed: %s", self.session_id, exc)

    async def _on_store_outage(self, down: bool) -> None:
        if down:
            self._send(
                events.Error(
                    self.session_id,
                    code="store_unavailable",
                    message="Session storage is unreachable; transcripts are kept and saved when it returns.",
                ).to_json()
            )

    # --- teardown -------------------------------------------------------------------------
    async def _close_if_never_connected(self) -> None:
        await asyncio.sleep(self._settings.connect_timeout_s)
        if self._pc.connectionState != "connected":
            self.close("ICE did not connect")

    def close(self, reason: str, state: str = "created") -> asyncio.Task:
        """Idempotent; returns the task that finishes the teardown.

        `state` is what the session becomes: "created" lets a reconnect resume
        it, "ended" (DELETE) does not. "ended" wins even when the connection
        was already closing, as when a caller hangs up and then DELETEs.
        """
        if state == "ended":
            self._end_state = "ended"
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._teardown(reason))
        return self._closing

    async def _teardown(self, reason: str) -> None:
        log.info("session %s: closing (%s)", self.session_id, reason)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._interview is not None:
            await self._interview.close()  # saves where the interview is, for a reconnect
        await self._pc.close()  # ends the tracks, so _consume_audio finishes the last utterances
        for speaker, task in self._audio_tasks.items():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            except asyncio.TimeoutError:
                await self._pipelines[speaker].abort()
        if self._assist is not None:
            await self._assist.close()  # stores the call summary
        self._writer.fields(state=self._end_state)
        if await self._writer.flush(FINAL_FLUSH_TIMEOUT_S):
            await self._writer.stop()
        else:
            # Redis is away: the writer keeps retrying after the call; the server holds on to it.
            log.warning("session %s: %d writes wait for Redis", self.session_id, self._writer.pending)
        self._on_closed(self)

    def assist_summary(self) -> Optional[dict]:
        """The assist call's summary so far (None outside assist calls)."""
        return self._assist.summary() if self._assist is not None else None

    @property
    def writer(self) -> WriteBehind:
        return self._writer

"""One live WebRTC call: the peer connection, its tracks, and the teardown.

    caller's audio track(s) --> TrackPipeline per track (server/pipeline.py) --publish--> Outbox
    Outbox: persist -> data channel `events` -> metrics -> the call's mode (server/modes/)
    the mode's outbound track (the interviewer's voice) --> back to the caller

A single-speaker call uses the first audio track it is sent; a mode with
labelled tracks (assist: agent, customer) runs one pipeline per track, and
the pipelines share the call's final numbering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Optional, Sequence

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from earshot.models.asr import SpeechRecognizer
from earshot.models.turn_model import EndOfTurnModel
from earshot.server import protocol
from earshot.server.ice import rtc_configuration
from earshot.server.intent_stage import IntentOptions
from earshot.server.modes import CallContext, CallMode
from earshot.server.outbox import EventChannel, Outbox
from earshot.server.pipeline import ResumePoint, TrackPipeline, final_numbers
from earshot.server.recording import CallRecording
from earshot.server.redaction_stage import RedactionOptions
from earshot.server.settings import Settings
from earshot.server.store import SessionRecord
from earshot.server.write_behind import WriteBehind
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FINAL_FLUSH_TIMEOUT_S = 3.0
PIPELINE_CLOSE_TIMEOUT_S = 10.0  # a track's last final, after the caller hung up
NOTICE_FLUSH_S = 1.0  # at most, for a closing notice to leave before the connection closes
PROGRESS_EVERY_FRAMES = 50  # 20 ms frames: save the audio clock about once a second

# aiortc's audio receiver holds 4 frames (80 ms) before releasing one, to smooth
# playout. Nothing here plays the caller's audio out: the VAD and Whisper take
# frames as they come, so that buffer would only delay every partial, final
# and barge-in by 80 ms. One frame is the least it can hold (it releases a
# frame when the next one starts). Packet order and loss handling stay aiortc's.
AUDIO_PREFETCH_FRAMES = 1
JITTER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"  # aiortc internal; pinned, see pyproject.toml


def release_audio_without_prefetch(receiver: RTCRtpReceiver) -> None:
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE, None)
    if not isinstance(current, JitterBuffer):  # a future aiortc may name it otherwise: keep its default
        log.warning("aiortc's audio jitter buffer not found; keeping its 80 ms prefetch")
        return
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, JitterBuffer(capacity=current.capacity, prefetch=AUDIO_PREFETCH_FRAMES))


class LiveSession:
    def __init__(
        self,
        record: SessionRecord,
        resume: ResumePoint,
        resumed_finals: int,
        engine: SpeechRecognizer,
        settings: Settings,
        writer_factory: Callable[[Callable[[bool], Awaitable[None]]], WriteBehind],
        on_closed: Callable[["LiveSession"], None],
        open_mode: Callable[[CallContext], CallMode],
        observe: Callable[[protocol.Event], None],
        intents: Optional[IntentOptions] = None,
        redaction: Optional[RedactionOptions] = None,
        speakers: Optional[dict[str, str]] = None,  # SDP mid -> speaker label, for modes with labelled tracks
        ice_servers: Sequence[dict[str, Any]] = (),  # the server side's STUN/TURN entries (server/turn.py)
        end_of_turn: Optional[EndOfTurnModel] = None,  # the end-of-turn model, for endpointing model
        hold_unfinished_turns: bool = True,  # the mode's (ModeKind): False in assist calls
        instance: str = "",  # this server instance's id (server/cluster.py), told to the caller
        recording: Optional[Callable[[list[str]], CallRecording]] = None,  # the setting `recording`: speakers -> recorders
    ) -> None:
        self.record = record
        self.session_id = record.session_id
        self._settings = settings
        self._instance = instance
        self._resumed_finals = resumed_finals
        self._on_closed = on_closed
        self.writer = writer_factory(self._on_store_outage)
        self._channel = EventChannel(self.session_id)
        self.outbox = Outbox(self.writer, self._channel, observe, self._progress)
        self._speakers = dict(speakers or {})
        seq_numbers = final_numbers(resume.next_final_seq)
        track_speakers = sorted(set(self._speakers.values())) or [""]
        self._recording = recording(track_speakers) if recording is not None else None
        self._pipelines = {
            speaker: TrackPipeline(
                self.session_id, engine, settings, self.outbox.publish, resume, speaker, intents, seq_numbers, redaction,
                end_of_turn, hold_unfinished_turns,
                on_audio=self._recording.recorders[speaker].push if self._recording is not None else None,
            )
            for speaker in track_speakers
        }
        context = CallContext(record, self.outbox.publish, self.audio_s, self.writer.fields, intents is not None)
        self.mode = open_mode(context)
        self.outbox.deliver_to(self.mode)
        self._pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._audio_tasks: dict[str, asyncio.Task] = {}
        self._watchdog: Optional[asyncio.Task] = None
        self._closing: Optional[asyncio.Task] = None
        self._connected = False  # ICE and DTLS got through at least once: aiortc's receivers started
        self._end_state = "created"
        self._wire_peer_connection()

    @property
    def closed(self) -> bool:
        return self._closing is not None

    @property
    def abandoned(self) -> bool:
        """Closed with its session not ended (no DELETE), after it connected or resumed a session with audio."""
        return self.closed and self._end_state != "ended" and (self._connected or self.record.audio_s > 0)

    # --- signalling ---------------------------------------------------------------
    async def answer(self, offer_sdp: str) -> RTCSessionDescription:
        """Apply the caller's offer; returns the answer with every ICE candidate in it."""
        self.writer.start()
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "audio":
                release_audio_without_prefetch(transceiver.receiver)
        if self.mode.outbound_track is not None:
            # Rides on the caller's audio transceiver (sendrecv), so no renegotiation is needed.
            self._pc.addTrack(self.mode.outbound_track)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        self.writer.fields(state="live")
        self._watchdog = asyncio.ensure_future(self._close_if_never_connected())
        return self._pc.localDescription

    def _wire_peer_connection(self) -> None:
        pc = self._pc

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != protocol.EVENTS_CHANNEL:
                return
            self._channel.open(channel, first=self._ready_event())
            self.mode.start()  # the caller can now see (and hear) the mode

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio":
                return
            mid = next((t.mid for t in self._pc.getTransceivers() if t.receiver.track is track), None)
            speaker = self._speakers.get(mid or "", "")
            if speaker in self._pipelines and speaker not in self._audio_tasks:
                self._audio_tasks[speaker] = asyncio.ensure_future(self._consume_audio(track, self._pipelines[speaker]))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.session_id, pc.connectionState)
            if pc.connectionState == "connected":
                self._connected = True
            if pc.connectionState in ("failed", "closed"):
                self.close("connection " + pc.connectionState)

    def _ready_event(self) -> protocol.Ready:
        """The channel's first message: what this call is, before anything else arrives."""
        return protocol.Ready(
            self.session_id,
            mode=self.record.mode,
            role=self.record.role,
            difficulty=self.record.difficulty,
            pace_min_wps=self._settings.pace_min_wps,
            pace_max_wps=self._settings.pace_max_wps,
            resumed_finals=self._resumed_finals,
            speakers=[speaker for speaker in self._pipelines if speaker],
            instance=self._instance,
        )

    # --- media ---------------------------------------------------------------------------
    def audio_s(self) -> float:
        """The session's audio clock: the furthest any of its tracks has got."""
        return max(pipeline.audio_s for pipeline in self._pipelines.values())

    async def _consume_audio(self, track: MediaStreamTrack, pipeline: TrackPipeline) -> None:
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
                pipeline.push_frame(frame)
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
        self.outbox.publish(protocol.Error(self.session_id, code="no_media", message=message))
        self.close("no audio")

    def _progress(self) -> dict[str, Any]:
        """Where a reconnect resumes (the audio clock, the next utterance number), and when audio was last
        heard (wall clock): a killed instance's call ended then (server/abandoned_calls.py)."""
        next_utterance = max(pipeline.next_utterance_id for pipeline in self._pipelines.values())
        return {"audio_s": round(self.audio_s(), 3), "next_utterance_id": next_utterance, "heard_at": round(time.time(), 3)}

    def _save_progress(self) -> None:
        self.writer.fields(**self._progress())

    async def _on_store_outage(self, down: bool) -> None:
        if down:
            message = "Session storage is unreachable; transcripts are kept and saved when it returns."
            self.outbox.publish(protocol.Error(self.session_id, code="store_unavailable", message=message))

    # --- teardown -------------------------------------------------------------------------
    async def _close_if_never_connected(self) -> None:
        await asyncio.sleep(self._settings.connect_timeout_s)
        if self._pc.connectionState != "connected":
            self.close("ICE did not connect")

    async def close_with_notice(self, code: str, message: str) -> None:
        """Tell the caller why (an `error` event, sent before the connection goes), then close; resumable."""
        if self._closing is None:
            self.outbox.publish(protocol.Error(self.session_id, code=code, message=message))
            await self.outbox.drain()
            await self._channel.flushed(NOTICE_FLUSH_S)
        await self.close(message)

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
        try:
            await self._pc.close()  # ends the tracks: each track's loop closes its pipeline (its last final goes out)
        except Exception as exc:  # aiortc fails to close what a rejected offer half-built: the rest must still run
            log.warning("session %s: closing the peer connection failed: %r", self.session_id, exc)
        # aiortc ends a remote track only once its receiver has started, which happens on connecting:
        # a call that never connected has no audio to wait for, and its track loops would wait on.
        wait_s = PIPELINE_CLOSE_TIMEOUT_S if self._connected else 0.0
        for speaker, pipeline in self._pipelines.items():
            track_loop = self._audio_tasks.get(speaker)
            if not await _finished(track_loop, wait_s):
                await cancel_and_wait(track_loop)
                await pipeline.abort()  # never got audio, or its last final is stuck: drop what is in flight
        if self._recording is not None:  # every track's audio is in: its files are closed (off the loop)
            recorded = await self._recording.finish()
            if recorded:
                self.writer.fields(recording=recorded)
        await self.outbox.drain()  # the last finals are stored and sent, and the mode has heard them
        await self.mode.close()  # the interviewer saves where it is; an assist call stores its summary
        await self.outbox.close()
        self.writer.fields(state=self._end_state)
        if await self.writer.flush(FINAL_FLUSH_TIMEOUT_S):
            await self.writer.stop()
        else:
            # Redis is away: the writer keeps retrying after the call; the server holds on to it.
            log.warning("session %s: %d writes wait for Redis", self.session_id, self.writer.pending)
        self._on_closed(self)


async def _finished(track_loop: Optional[asyncio.Task], timeout_s: float) -> bool:
    """Whether a track's loop (which closes its pipeline) ends within timeout_s; False when there is none."""
    if track_loop is None:
        return False
    try:
        await asyncio.wait_for(asyncio.shield(track_loop), timeout=timeout_s)
    except asyncio.TimeoutError:
        return False
    return True

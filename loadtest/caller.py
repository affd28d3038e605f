"""A headless caller: what a browser does, in Python, for tests and load tests.

It creates a session, connects with its own aiortc peer connection, streams
a WAV as Opus in real time exactly as a microphone would (and then silence,
since a live microphone never stops sending), and records every event the
server sends with the wall time it arrived. More speech can be queued while
the call runs (`say`), so a script can answer an interviewer, and the
interviewer's audio that comes back is measured frame by frame.

An assist caller sends two labelled tracks instead of one (`speakers`:
speaker -> PCM, e.g. the two channels of a call recording).

Like the browser, it connects through the ICE servers (STUN/TURN) the server
handed out with the session, unless given its own (`ice_servers`), and with
`relay_only` it gathers TURN relay candidates only (a browser's
iceTransportPolicy "relay").
"""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from earshot.server.ice import rtc_configuration
from earshot.server.protocol import EVENTS_CHANNEL

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * BYTES_PER_SAMPLE
# Received agent audio above this RMS (int16 scale) counts as audible. Opus
# decodes digital silence to exact zeros; speech sits in the thousands.
AUDIBLE_RMS = 100.0


class PcmTrack(MediaStreamTrack):
    """Plays 16 kHz mono PCM in real time, then silence until stopped.

    `audio_clock_s` is how much audio has been sent: the caller's own clock,
    against which it can place where each utterance ended.
    """

    kind = "audio"

    def __init__(self, pcm16: bytes, silence_after: bool = True) -> None:
        super().__init__()
        self._pcm = bytearray(pcm16)
        self._silence_after = silence_after
        self._sent_samples = 0
        self._started: Optional[float] = None

    @property
    def audio_clock_s(self) -> float:
        return self._sent_samples / SAMPLE_RATE

    @property
    def pcm_done(self) -> bool:
        return self._sent_samples * BYTES_PER_SAMPLE >= len(self._pcm)

    def append(self, pcm16: bytes) -> tuple[float, float]:
        """Queue more audio after what is pending (now, if nothing is); returns its (start, end) on the clock."""
        start_sample = max(self._sent_samples, len(self._pcm) // BYTES_PER_SAMPLE)
        if start_sample * BYTES_PER_SAMPLE > len(self._pcm):
            self._pcm += bytes(start_sample * BYTES_PER_SAMPLE - len(self._pcm))  # the silence sent meanwhile
        self._pcm += pcm16
        return start_sample / SAMPLE_RATE, len(self._pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE

    def wall_at(self, clock_s: float) -> Optional[float]:
        """time.monotonic() at which the sample at `clock_s` is (or was) sent: frames are paced in real time."""
        return None if self._started is None else self._started + clock_s

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        if self._started is None:
            self._started = time.monotonic()
        due = self._started + self._sent_samples / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = self._sent_samples * BYTES_PER_SAMPLE
        chunk = self._pcm[offset : offset + FRAME_BYTES]
        if len(chunk) < FRAME_BYTES:
            if not chunk and not self._silence_after:
                self.stop()
            chunk = chunk + bytes(FRAME_BYTES - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent_samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent_samples += FRAME_SAMPLES
        return frame


@dataclass(frozen=True)
class AgentFrame:
    wall: float  # time.monotonic() when the frame was decoded
    audio_clock_s: float  # the caller's own audio clock then
    rms: float

    @property
    def audible(self) -> bool:
        return self.rms >= AUDIBLE_RMS


@dataclass
class ReceivedEvent:
    wall: float  # time.monotonic() on arrival
    audio_clock_s: float  # audio the caller had sent by then
    event: dict[str, Any]


CREDENTIAL_ENV = "EARSHOT_LOADTEST_CREDENTIAL"


def credential_headers() -> dict[str, str]:
    """The load tester's identity for the server's own endpoints (/healthz details, /metrics: admin)."""
    credential = os.environ.get(CREDENTIAL_ENV)
    return {"Authorization": f"Bearer {credential}"} if credential else {}


class IceFailed(ConnectionError):
    """The peer connection failed (or closed) before its data channel opened: no candidate pair worked (e.g. TURN refused us)."""


class ApiCallError(RuntimeError):
    def __init__(self, status: int, body: Any, retry_after_s: Optional[float] = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body, self.retry_after_s = status, body, retry_after_s

    @property
    def code(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code", "") if isinstance(error, dict) else ""

    @property
    def worth_waiting(self) -> bool:
        """A reconnect the server asks to retry: the old connection (here or on a stopped instance) is
        still held, or the instance holding the call cannot be reached (server/routing.py)."""
        return (self.status, self.code) in WAIT_AND_RETRY


WAIT_AND_RETRY = {(409, "session_live"), (503, "call_moving"), (503, "instance_unreachable")}
NEXT_ROUND_S = 0.5  # between rounds of the instances when none could take the offer


def _instance_down(exc: Exception) -> str:
    """Why the instance asked cannot take the call ("" if it can): unreachable, or without Redis."""
    if isinstance(exc, httpx.TransportError):
        return "unreachable"
    return "store_unavailable" if isinstance(exc, ApiCallError) and exc.code == "store_unavailable" else ""


@dataclass
class HeadlessCaller:
    base_url: str
    pcm16: bytes
    role: str = "software_engineer"
    difficulty: str = "medium"
    mode: str = "interview"
    session_id: Optional[str] = None
    token: Optional[str] = None
    events: list[ReceivedEvent] = field(default_factory=list)
    connect_s: Optional[float] = None  # offer sent -> data channel open
    agent_frames: list[AgentFrame] = field(default_factory=list)  # the interviewer's audio, frame by frame
    speakers: Optional[dict[str, bytes]] = None  # assist: one labelled track per speaker instead of `pcm16`
    track_class: type[PcmTrack] = PcmTrack  # the load test's fault callers send through misbehaving tracks
    ice_servers: Optional[list[dict[str, Any]]] = None  # None = the ones the session came with
    relay_only: bool = False  # TURN relay candidates only
    offer_sdp: Optional[str] = None  # the offer as sent, with every local candidate
    offer_patience_s: float = 30.0  # how long an offer is sent again while the server asks to wait
    offer_waits: list[tuple[str, float]] = field(default_factory=list)  # each wait: (the code, seconds)
    other_urls: tuple[str, ...] = ()  # more instances of the same deployment, tried when one is down
    # The identity that creates the session on a server with `--auth on` (an API key or an access
    # token): from the environment only, so no command line, log or results file holds it.
    credential: Optional[str] = field(default_factory=lambda: os.environ.get(CREDENTIAL_ENV) or None, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30)
        self._pc: Optional[RTCPeerConnection] = None
        self.track: Optional[PcmTrack] = None  # the first track: its clock is the caller's clock
        self.tracks: dict[str, PcmTrack] = {}
        self._new_event = asyncio.Event()
        self._audio_task: Optional[asyncio.Task] = None

    async def _api(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        bearer = self.token or self.credential  # the session's own token once it has one
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        response = await self._http.request(method, path, json=body, headers=headers)
        data = response.json()
        if response.status_code >= 400:
            retry_after = response.headers.get("retry-after")
            raise ApiCallError(response.status_code, data, float(retry_after) if retry_after else None)
        return data

    async def create_session(self) -> str:
        body = {"mode": self.mode, "difficulty": self.difficulty}
        if self.mode != "assist":
            body["role"] = self.role
        data = await self._api("POST", "/api/sessions", body)
        self.session_id, self.token = data["session_id"], data["token"]
        if self.ice_servers is None:
            self.ice_servers = data.get("ice_servers", [])
        return self.session_id

    async def connect(self) -> None:
        """Offer audio + the `events` channel; return once the channel is open."""
        if self.session_id is None:
            await self.create_session()
        self._pc = pc = RTCPeerConnection(rtc_configuration(self.ice_servers or (), relay_only=self.relay_only))
        if self.speakers:
            self.tracks = {speaker: self.track_class(pcm) for speaker, pcm in self.speakers.items()}
        else:
            self.tracks = {"": self.track_class(self.pcm16)}
        for track in self.tracks.values():
            pc.addTrack(track)
        self.track = next(iter(self.tracks.values()))
        channel = pc.createDataChannel(EVENTS_CHANNEL)
        opened = asyncio.Event()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._audio_task is None:
                self._audio_task = asyncio.ensure_future(self._listen_to_agent(track))
        channel.on("open", opened.set)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            # aiortc closes (rather than fails) a connection whose ICE has no candidate pair at all
            if pc.connectionState in ("failed", "closed"):
                opened.set()  # wakes connect() below, which raises IceFailed

        @channel.on("message")
        def on_message(message: str) -> None:
            clock = self.track.audio_clock_s if self.track else 0.0
            self.events.append(ReceivedEvent(time.monotonic(), clock, json.loads(message)))
            self._new_event.set()

        started = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        self.offer_sdp = pc.localDescription.sdp
        if not self.local_candidate_types:  # aiortc would wait forever: it starts no ICE without a candidate
            await pc.close()
            raise IceFailed("no local ICE candidate" + (": the TURN server gave no relay address" if self.relay_only else ""))
        offer: dict[str, Any] = {"sdp": self.offer_sdp, "type": "offer"}
        if self.speakers:
            offer["tracks"] = {track.id: speaker for speaker, track in self.tracks.items()}
        answer = await self._offer_patiently(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened.wait(), timeout=20)
        if pc.connectionState in ("failed", "closed"):
            raise IceFailed(f"ICE failed; local candidate types: {', '.join(self.local_candidate_types) or 'none'}")
        self.connect_s = time.monotonic() - started

    async def _offer_patiently(self, offer: dict[str, Any]) -> dict[str, Any]:
        """The offer, sent again while the server asks to wait (as the page does): a reconnect after a
        dropped link or a stopped instance, within `offer_patience_s`. An instance that cannot be
        reached, or cannot reach Redis, is left for the next of `other_urls` (as a load balancer would)."""
        deadline = time.monotonic() + self.offer_patience_s
        while True:
            try:
                return await self._api("POST", f"/api/sessions/{self.session_id}/offer", offer)
            except (ApiCallError, httpx.TransportError) as exc:
                if self.other_urls and _instance_down(exc) and time.monotonic() < deadline:
                    self.offer_waits.append((_instance_down(exc), 0.0))
                    self._next_instance()
                    if len(self.offer_waits) % (1 + len(self.other_urls)) == 0:
                        await asyncio.sleep(NEXT_ROUND_S)  # every instance is down: not in a tight loop
                    continue
                if not isinstance(exc, ApiCallError):
                    raise
                wait_s = min(exc.retry_after_s or 1.0, 5.0)
                if not exc.worth_waiting or time.monotonic() + wait_s > deadline:
                    raise
                self.offer_waits.append((exc.code, wait_s))
                await asyncio.sleep(wait_s)

    def _next_instance(self) -> None:
        """The next of base_url and other_urls, round the ring."""
        ring = [self.base_url, *self.other_urls]
        self.other_urls = tuple(ring[2:] + ring[:1])
        self.base_url = ring[1]
        self._http.base_url = httpx.URL(self.base_url)

    async def _listen_to_agent(self, track: MediaStreamTrack) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float32)
                rms = float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0
                clock = self.track.audio_clock_s if self.track else 0.0
                self.agent_frames.append(AgentFrame(time.monotonic(), clock, rms))
                if rms >= AUDIBLE_RMS:
                    self._new_event.set()
        except MediaStreamError:
            pass

    @property
    def local_candidate_types(self) -> list[str]:
        """The type (host, srflx, relay) of each candidate in the offer: all relay with `relay_only`."""
        lines = (self.offer_sdp or "").splitlines()
        return [line.split(" typ ")[1].split()[0] for line in lines if line.startswith("a=candidate:")]

    def say(self, pcm16: bytes) -> tuple[float, float]:
        """Speak `pcm16` next on the microphone; returns its (start, end) on the caller's audio clock."""
        return self.track.append(pcm16)

    def audible_frames(self, after_wall: float = 0.0) -> list[AgentFrame]:
        return [f for f in self.agent_frames if f.audible and f.wall >= after_wall]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.event for r in self.events if r.event["type"] == kind]

    async def wait_until(self, condition: Callable[["HeadlessCaller"], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), timeout=min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        return True

    async def hangup(self, end_session: bool = True, keep_api: bool = False) -> None:
        """Stop sending, close the connection, DELETE the session; `keep_api` leaves the HTTP client open."""
        for track in self.tracks.values():
            track.stop()
        if self._audio_task is not None:
            self._audio_task.cancel()
        if self._pc is not None:
            await self._pc.close()
        if end_session and self.session_id:
            try:
                await self._api("DELETE", f"/api/sessions/{self.session_id}")
            except (ApiCallError, httpx.HTTPError):
                pass
        if not keep_api:
            await self._http.aclose()

    async def api(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        """An authorised call to the session API (`path` after /api/sessions/{id})."""
        return await self._api(method, f"/api/sessions/{self.session_id}{path}", body)

    async def close_api(self) -> None:
        await self._http.aclose()

    async def session_state(self) -> dict:
        return await self._api("GET", f"/api/sessions/{self.session_id}")


def speech_bounds(pcm16: bytes, threshold_rms: float = 300.0) -> tuple[float, float]:
    """(first, last) moment of voice in a clip, by 10 ms frame energy: where "the candidate spoke".

    Latencies are measured from these, not from the clip's edges, since
    recordings carry some silence before and after the words.
    """
    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32)
    hop = SAMPLE_RATE // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt(np.mean(frames * frames, axis=1)) >= threshold_rms)
    if loud.size == 0:
        return 0.0, 0.0
    return float(loud[0] * hop / SAMPLE_RATE), float((loud[-1] + 1) * hop / SAMPLE_RATE)

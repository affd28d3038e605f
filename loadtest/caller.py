"""A headless caller: what a browser does, in Python, for tests and load tests.

It creates a session, connects with its own aiortc peer connection, streams
a WAV as Opus in real time exactly as a microphone would (and then silence,
since a live microphone never stops sending), and records every event the
server sends with the wall time it arrived.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import av
import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from server.ice import rtc_configuration

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


class PcmTrack(MediaStreamTrack):
    """Plays 16 kHz mono PCM in real time, then silence until stopped.

    `audio_clock_s` is how much audio has been sent: the caller's own clock,
    against which it can place where each utterance ended.
    """

    kind = "audio"

    def __init__(self, pcm16: bytes, silence_after: bool = True) -> None:
        super().__init__()
        self._pcm = pcm16
        self._silence_after = silence_after
        self._sent_samples = 0
        self._started: Optional[float] = None

    @property
    def audio_clock_s(self) -> float:
        return self._sent_samples / SAMPLE_RATE

    @property
    def pcm_done(self) -> bool:
        return self._sent_samples * 2 >= len(self._pcm)

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
        offset = self._sent_samples * 2
        chunk = self._pcm[offset : offset + FRAME_SAMPLES * 2]
        if len(chunk) < FRAME_SAMPLES * 2:
            if not chunk and not self._silence_after:
                self.stop()
            chunk = chunk + bytes(FRAME_SAMPLES * 2 - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent_samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent_samples += FRAME_SAMPLES
        return frame


@dataclass
class ReceivedEvent:
    wall: float  # time.monotonic() on arrival
    audio_clock_s: float  # audio the caller had sent by then
    event: dict[str, Any]


class ApiCallError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


@dataclass
class HeadlessCaller:
    base_url: str
    pcm16: bytes
    role: str = "software_engineer"
    difficulty: str = "medium"
    session_id: Optional[str] = None
    token: Optional[str] = None
    events: list[ReceivedEvent] = field(default_factory=list)
    connect_s: Optional[float] = None  # offer sent -> data channel open

    def __post_init__(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30)
        self._pc: Optional[RTCPeerConnection] = None
        self.track: Optional[PcmTrack] = None
        self._new_event = asyncio.Event()

    async def _api(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self._http.request(method, path, json=body, headers=headers)
        data = response.json()
        if response.status_code >= 400:
            raise ApiCallError(response.status_code, data)
        return data

    async def create_session(self) -> str:
        data = await self._api("POST", "/api/sessions", {"mode": "interview", "role": self.role, "difficulty": self.difficulty})
        self.session_id, self.token = data["session_id"], data["token"]
        return self.session_id

    async def connect(self) -> None:
        """Offer audio + the `events` channel; return once the channel is open."""
        if self.session_id is None:
            await self.create_session()
        self._pc = pc = RTCPeerConnection(rtc_configuration())
        self.track = PcmTrack(self.pcm16)
        pc.addTrack(self.track)
        channel = pc.createDataChannel("events")
        opened = asyncio.Event()
        channel.on("open", opened.set)

        @channel.on("message")
        def on_message(message: str) -> None:
            clock = self.track.audio_clock_s if self.track else 0.0
            self.events.append(ReceivedEvent(time.monotonic(), clock, json.loads(message)))
            self._new_event.set()

        started = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._api(
            "POST", f"/api/sessions/{self.session_id}/offer", {"sdp": pc.localDescription.sdp, "type": "offer"}
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened.wait(), timeout=20)
        self.connect_s = time.monotonic() - started

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

    async def hangup(self, end_session: bool = True) -> None:
        if self.track is not None:
            self.track.stop()
        if self._pc is not None:
            await self._pc.close()
        if end_session and self.session_id:
            try:
                await self._api("DELETE", f"/api/sessions/{self.session_id}")
            except (ApiCallError, httpx.HTTPError):
                pass
        await self._http.aclose()

    async def session_state(self) -> dict:
        return await self._api("GET", f"/api/sessions/{self.session_id}")

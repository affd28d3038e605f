"""Callers that misbehave, run beside normal load to check the server frees what they held.

    vanish       connects and streams, then its process is SIGKILLed: no BYE, no DTLS close, no DELETE
    garbage_rtp  connects, then sends random Opus payloads and malformed RTP packets
    no_ice       posts a real offer, then never answers ICE checks
    idle         connects (data channel open) and never sends audio; also opens sessions it never offers

Each reports `freed_after_s`: from the moment it misbehaved until the server
no longer held the call live (GET /api/sessions/{id} -> "live": false). The
server's `--connect-timeout-s` and `--media-timeout-s` bound those times.

Run by itself (the vanishing caller needs its own process to be killed):

    python -m loadtest.faults vanish --url http://127.0.0.1:8000 --audio clip.wav
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import av
import httpx
from aiortc import RTCPeerConnection

from earshot.loadtest.caller import FRAME_SAMPLES, ApiCallError, HeadlessCaller, PcmTrack
from earshot.models.audio import read_audio
from earshot.server.ice import restrict_ice_to_loopback, rtc_configuration
from earshot.server.protocol import EVENTS_CHANNEL

FAULT_KINDS = ("vanish", "garbage_rtp", "no_ice", "idle")
MISBEHAVE_S = 4.0  # how long a fault caller streams or sends garbage before it misbehaves for good
FREE_TIMEOUT_S = 120.0
UNOFFERED_SESSIONS = 3
OPUS_RATE = 48000


@dataclass(frozen=True)
class FaultResult:
    kind: str
    session_id: Optional[str]
    error: Optional[str]  # the fault caller could not do its part (not a server failure)
    freed_after_s: Optional[float]  # None: the server still held the call after FREE_TIMEOUT_S
    notes: str


async def run_fault(kind: str, url: str, clip: Path, loopback: bool = True) -> FaultResult:
    runners = {"vanish": _vanish, "garbage_rtp": _garbage_rtp, "no_ice": _no_ice, "idle": _idle}
    try:
        return await runners[kind](url, clip, loopback)
    except Exception as exc:  # the fault itself broke: report it, never end the run
        return FaultResult(kind, None, f"{type(exc).__name__}: {exc}", None, "")


# --- the faults -----------------------------------------------------------------------------
async def _vanish(url: str, clip: Path, loopback: bool) -> FaultResult:
    command = [sys.executable, "-m", "earshot.loadtest.faults", "vanish", "--url", url, "--audio", str(clip)]
    child = await asyncio.create_subprocess_exec(
        *command, *(["--loopback"] if loopback else []), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        session = json.loads(line)
        await asyncio.sleep(MISBEHAVE_S)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
    vanished = time.monotonic()
    freed = await _freed_after(url, session["session_id"], session["token"], vanished)
    return FaultResult("vanish", session["session_id"], None, freed, "caller process SIGKILLed mid-stream")


async def _garbage_rtp(url: str, clip: Path, loopback: bool) -> FaultResult:
    caller = HeadlessCaller(url, read_audio(clip), mode="transcribe", track_class=GarbageTrack)
    await caller.connect()
    sender = caller._pc.getSenders()[0]  # noqa: SLF001 - the caller's own connection
    malformed = rejected = 0
    deadline = time.monotonic() + MISBEHAVE_S
    while time.monotonic() < deadline:
        # Below the codec: a valid RTP version and length, the rest random (payload type, sequence,
        # SSRC, payload), SRTP-protected by the caller's own transport so it reaches the server's parser.
        packet = bytes([0x80]) + os.urandom(11 + random.randint(1, 200))
        try:
            await sender.transport._send_rtp(packet)  # noqa: SLF001 - no public API sends raw RTP
            malformed += 1
        except Exception:  # libsrtp refused this one: try the next
            rejected += 1
        await asyncio.sleep(0.02)
    ended = time.monotonic()
    await caller.hangup(keep_api=True)
    try:
        freed = await _freed_after(url, caller.session_id, caller.token, ended)
    finally:
        await caller.close_api()
    notes = (
        f"{caller.track.garbage_sent} garbage Opus payloads, {malformed} malformed RTP packets "
        f"({rejected} refused by the caller's SRTP), then a normal hangup"
    )
    return FaultResult("garbage_rtp", caller.session_id, None, freed, notes)


async def _no_ice(url: str, clip: Path, loopback: bool) -> FaultResult:
    caller = HeadlessCaller(url, b"", mode="transcribe")
    await caller.create_session()
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel(EVENTS_CHANNEL)
    await pc.setLocalDescription(await pc.createOffer())
    await caller.api("POST", "/offer", {"sdp": pc.localDescription.sdp, "type": "offer"})
    await pc.close()  # its ports close: the server's ICE checks go unanswered
    answered = time.monotonic()
    try:
        freed = await _freed_after(url, caller.session_id, caller.token, answered)
    finally:
        await caller.close_api()
    return FaultResult("no_ice", caller.session_id, None, freed, "offer posted, then the caller's ICE agent closed")


async def _idle(url: str, clip: Path, loopback: bool) -> FaultResult:
    unoffered = []
    for _ in range(UNOFFERED_SESSIONS):
        bare = HeadlessCaller(url, b"", mode="transcribe")
        await bare.create_session()
        unoffered.append(bare)
    caller = HeadlessCaller(url, b"", mode="transcribe", track_class=SilentTrack)
    await caller.connect()
    connected = time.monotonic()
    try:
        freed = await _freed_after(url, caller.session_id, caller.token, connected)
    finally:
        await caller.hangup()
    live_unoffered = 0
    for bare in unoffered:
        try:
            live_unoffered += bool((await bare.session_state())["live"])
            await bare.api("DELETE", "")
        except ApiCallError:
            pass
        await bare.close_api()
    notes = f"connected without sending audio; {UNOFFERED_SESSIONS} sessions created and never offered ({live_unoffered} held live)"
    return FaultResult("idle", caller.session_id, None, freed, notes)


async def _freed_after(url: str, session_id: str, token: str, since: float) -> Optional[float]:
    """Seconds from `since` until the server reports the session not live; None past FREE_TIMEOUT_S."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        while time.monotonic() - since < FREE_TIMEOUT_S:
            try:
                response = await http.get(f"/api/sessions/{session_id}", headers=headers)
                if response.status_code == 200 and not response.json().get("live"):
                    return round(time.monotonic() - since, 2)
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    return None


# --- misbehaving tracks ----------------------------------------------------------------------
class GarbageTrack(PcmTrack):
    """Every other frame is random bytes passed to the sender as an already-encoded Opus packet."""

    def __init__(self, pcm16: bytes, silence_after: bool = True) -> None:
        super().__init__(pcm16, silence_after)
        self.garbage_sent = 0

    async def recv(self):
        frame = await super().recv()
        if (self._sent_samples // FRAME_SAMPLES) % 2:
            return frame
        packet = av.Packet(os.urandom(random.randint(1, 120)))
        packet.pts = frame.pts * OPUS_RATE // frame.sample_rate
        packet.time_base = fractions.Fraction(1, OPUS_RATE)
        self.garbage_sent += 1
        return packet


class SilentTrack(PcmTrack):
    """An audio track that never yields a frame: the connection is up, no RTP flows."""

    async def recv(self):
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


# --- the vanishing caller's own process --------------------------------------------------------
async def _stream_until_killed(url: str, clip: Path) -> None:
    caller = HeadlessCaller(url, read_audio(clip), mode="transcribe")
    await caller.connect()
    print(json.dumps({"session_id": caller.session_id, "token": caller.token}), flush=True)
    await asyncio.Event().wait()  # streams until the parent kills this process


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.faults")
    parser.add_argument("kind", choices=["vanish"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--loopback", action="store_true", help="offer only 127.0.0.1 ICE candidates")
    args = parser.parse_args(argv)
    if args.loopback:
        restrict_ice_to_loopback()
    asyncio.run(_stream_until_killed(args.url, args.audio))
    return 0


if __name__ == "__main__":
    sys.exit(main())

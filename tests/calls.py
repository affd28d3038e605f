"""Helpers for tests that place real WebRTC calls with the headless caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

from earshot.loadtest.caller import ApiCallError, HeadlessCaller
from earshot.models.audio import read_audio


def utterances_settled(caller: HeadlessCaller) -> bool:
    """Every utterance that started has ended, and every one kept has its final (or word that none comes)."""
    started = caller.of_type("speech_start")
    ended = caller.of_type("speech_end")
    kept = [e for e in ended if not e["dropped"]]
    return len(started) == len(ended) and len(caller.of_type("final")) + len(caller.of_type("no_final")) >= len(kept)


async def call_with(base_url: str, wav: Path, tail_s: float = 1.5, timeout_s: float = 30.0) -> HeadlessCaller:
    """Stream a WAV and wait until its last utterance has its final (or the timeout)."""
    return await call_with_pcm(HeadlessCaller(base_url, read_audio(wav)), tail_s, timeout_s)


def joined_clips(paths: list[Path], gap_s: float) -> bytes:
    """Clips one after another with `gap_s` of silence after each: one utterance per clip."""
    gap = bytes(int(gap_s * 16000) * 2)
    return b"".join(read_audio(path) + gap for path in paths)


async def call_with_pcm(caller: HeadlessCaller, tail_s: float = 1.5, timeout_s: float = 30.0) -> HeadlessCaller:
    await caller.connect()
    await finish_call(caller, tail_s, timeout_s)
    return caller


async def finish_call(caller: HeadlessCaller, tail_s: float = 1.5, timeout_s: float = 30.0) -> None:
    """Wait until a connected caller has sent all its audio and the last final is in."""
    duration = len(caller.pcm16) / 2 / 16000
    await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + tail_s, timeout=duration + timeout_s)
    await caller.wait_until(utterances_settled, timeout=timeout_s)


async def stored_finals(caller: HeadlessCaller, expected: int, timeout_s: float = 10.0) -> list[dict]:
    """The session's finals from the API, once `expected` of them are stored (write-behind may lag)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    finals: list[dict] = []
    while asyncio.get_running_loop().time() < deadline:
        try:
            finals = (await caller.session_state())["finals"]
        except ApiCallError:
            finals = []  # 503 while the store is still away
        if len(finals) >= expected:
            break
        await asyncio.sleep(0.25)
    return finals

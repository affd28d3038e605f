"""`earshot transcribe FILE.wav`: the live pipeline, fed from a file.

The file goes through the very same `SessionPipeline` a WebRTC caller gets,
in 20 ms chunks as a browser sends them. With `realtime=True` the chunks are
paced by the wall clock, so `emitted_audio_s` of each event is the audio clock
at the moment the event would have reached a live caller. After the file,
`end_of_speech_ms` + 0.5 s of silence follows, as a microphone would go on
recording, so the last utterance ends the way every other one does.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

from models.asr import AsrEngine
from models.audio import read_wav
from server import events
from server.pipeline import SessionPipeline
from server.settings import Settings

CHUNK_MS = 20


async def transcribe_file(
    path: Path,
    engine: AsrEngine,
    settings: Settings,
    on_event: Callable[[events.Event], None],
    realtime: bool = False,
    channel: Optional[int] = None,
    session_id: str = "file",
) -> None:
    pcm = read_wav(path, channel=channel)
    silence = bytes(int((settings.end_of_speech_ms / 1000 + 0.5) * settings.sample_rate) * 2)
    audio = pcm + silence

    async def sink(event: events.Event) -> None:
        on_event(event)

    pipeline = SessionPipeline(session_id, engine, settings, sink)
    chunk = settings.sample_rate * CHUNK_MS // 1000 * 2
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), chunk)):
        if realtime:
            due = started + index * CHUNK_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let decodes and emits interleave as they would live
        await pipeline.push(audio[offset : offset + chunk])
    await pipeline.close()


def print_events(out: TextIO, jsonl: bool) -> Callable[[events.Event], None]:
    def show(event: events.Event) -> None:
        if jsonl:
            out.write(event.to_json() + "\n")
        elif isinstance(event, events.Final):
            out.write(f"[{event.start:7.2f} - {event.end:7.2f}] {event.text}\n")
        elif isinstance(event, events.Pace) and event.final:
            out.write(f"    pace {event.window_wps:.2f} w/s ({event.verdict}), fillers {event.fillers}\n")
        out.flush()

    return show


def run_transcribe(settings: Settings, path: Path, realtime: bool, jsonl: bool, channel: Optional[int]) -> int:
    from server.pipeline import asr_config

    engine = AsrEngine.load(asr_config(settings))
    try:
        asyncio.run(transcribe_file(path, engine, settings, print_events(sys.stdout, jsonl), realtime, channel))
    finally:
        engine.close()
    return 0

"""`earshot transcribe FILE`: the live pipeline, fed from a file.

The file goes through the very same `TrackPipeline` a WebRTC caller gets,
in 20 ms chunks as a browser sends them. With `realtime=True` the chunks are
paced by the wall clock, so `emitted_audio_s` of each event is the audio clock
at the moment the event would have reached a live caller. After the file,
`end_of_speech_ms` + 0.5 s of silence follows, as a microphone would go on
recording, so the last utterance ends the way every other one does. With
`--endpointing model` the end-of-turn model is asked in its pauses as live.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

from earshot.models.asr import AsrEngine
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, AudioFormatError, read_audio
from earshot.server import protocol
from earshot.server.cli import Command
from earshot.models.turn_model import EndOfTurnModel
from earshot.server.configs import asr_config, end_of_turn_config
from earshot.server.pipeline import TrackPipeline
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args

CHUNK_MS = 20


async def transcribe_file(
    path: Path,
    engine: AsrEngine,
    settings: Settings,
    on_event: Callable[[protocol.Event], None],
    realtime: bool = False,
    channel: Optional[int] = None,
    session_id: str = "file",
    end_of_turn: Optional[EndOfTurnModel] = None,  # with endpointing model: loaded here when not given (0.3 s)
) -> None:
    pcm = read_audio(path, channel=channel)
    if end_of_turn is None and settings.endpointing == "model":
        end_of_turn = EndOfTurnModel.load(end_of_turn_config(settings))
    silence = bytes(int((settings.end_of_speech_ms / 1000 + 0.5) * SAMPLE_RATE) * BYTES_PER_SAMPLE)
    audio = pcm + silence

    # As a transcribe call: nobody takes a turn, so a pause is never held open past the silence rule.
    pipeline = TrackPipeline(session_id, engine, settings, on_event, end_of_turn=end_of_turn, hold_unfinished_turns=False)
    chunk = SAMPLE_RATE * CHUNK_MS // 1000 * BYTES_PER_SAMPLE
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), chunk)):
        if realtime:
            due = started + index * CHUNK_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let decodes and emits interleave as they would live
        pipeline.push(audio[offset : offset + chunk])
        if not realtime:
            await pipeline.decided()  # the end-of-turn model answers at the audio point it would live
    await pipeline.close()


def print_events(out: TextIO, jsonl: bool) -> Callable[[protocol.Event], None]:
    def show(event: protocol.Event) -> None:
        if jsonl:
            out.write(event.to_json() + "\n")
        elif isinstance(event, protocol.Final):
            out.write(f"[{event.start:7.2f} - {event.end:7.2f}] {event.text}\n")
        elif isinstance(event, protocol.Pace) and event.final:
            out.write(f"    pace {event.window_wps:.2f} w/s ({event.verdict}), fillers {event.fillers}\n")
        out.flush()

    return show


def run_transcribe(settings: Settings, path: Path, realtime: bool, jsonl: bool, channel: Optional[int]) -> int:
    engine = AsrEngine.load(asr_config(settings))
    try:
        asyncio.run(transcribe_file(path, engine, settings, print_events(sys.stdout, jsonl), realtime, channel))
    finally:
        engine.close()
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="an audio file in any format FFmpeg reads (WAV, FLAC, MP3, M4A, ...); channels are mixed unless --channel")
    parser.add_argument("--realtime", action="store_true", help="feed audio at real-time pace")
    parser.add_argument("--jsonl", action="store_true", help="print every event as one JSON line")
    parser.add_argument("--channel", type=int, default=None, help="take one channel of a multi-channel file")
    add_settings_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not args.file.is_file():
        raise AudioFormatError(f"{args.file}: no such file")
    return run_transcribe(settings, args.file, args.realtime, args.jsonl, args.channel)


COMMAND = Command(
    help="run the streaming pipeline over an audio file",
    add_arguments=_add_arguments,
    run=_run,
)

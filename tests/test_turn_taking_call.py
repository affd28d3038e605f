"""Turn-taking by the end-of-turn model in a real interview: WebRTC, Whisper, Smart Turn, SmolLM2, Piper.

A headless caller answers the interviewer with answers from the end-of-turn
set (tests/data/turns, built from corpus speech) and listens to what comes
back frame by frame. It checks what the issue asks of model endpointing:

* a finished answer gets its final and the interviewer's voice sooner than
  the silence rule could give them (500 ms of silence, then 700 ms more);
* an answer with a 1.5 s pause in the middle of a clause ("...the invention
  of | [1.5 s] | the art of printing.") is neither cut nor talked over;
* an answer that stops mid-clause and never goes on ends at the fallback
  silence, not sooner and not never.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Iterator

import pytest
from conftest import ServerProcess, start_server

from bench.turn_set import TurnItem, build_turn_set, load_manifest
from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio

pytestmark = [pytest.mark.slow, pytest.mark.timed]

FALLBACK_S = 2.5  # the default --end-of-turn-fallback-ms
SILENCE_RULE_S = 0.5 + 0.7  # --endpointing silence: end_of_speech_ms, then turn_pause_ms, before the interviewer speaks
HELD = "mid-lj0005-invention-of"  # "the invention of | 1.5 s | movable metal letters ... the art of printing."
CUT_SHORT = "mid-lj0020-the"  # its first piece alone: "... the" and then nothing more


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, TurnItem]:
    manifest = load_manifest()
    entries = {e["id"]: e for e in manifest["items"]}
    held = entries[HELD]
    cut_short = copy.deepcopy(entries[CUT_SHORT])
    cut_short.update(id="cut-short", kind="mid_clause", pauses=[], segments=cut_short["segments"][:1])
    cut_short["text"] = cut_short["segments"][0]["text"]
    built = build_turn_set(tmp_path_factory.mktemp("turns"), manifest={**manifest, "items": [held, cut_short]})
    return {item.id: item for item in built}


@pytest.fixture(scope="module")
def model_server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    srv = start_server(
        redis_url, tmp_path_factory.mktemp("turns-server"),
        extra_args=("--interview-questions", "2", "--max-follow-ups", "1", "--endpointing", "model"),
    )
    yield srv
    srv.stop()


async def wait_listening(caller: HeadlessCaller, after: int) -> None:
    def listening(c: HeadlessCaller) -> bool:
        turns = [e["state"] for e in c.of_type("turn")]
        return turns.count("listening") > after and turns[-1] == "listening"

    if not await caller.wait_until(listening, timeout=90):
        pytest.fail(f"the interviewer never listened; turns={[e['state'] for e in caller.of_type('turn')]}")


async def answer(caller: HeadlessCaller, item: TurnItem) -> tuple[float, float, int]:
    """Say the item; (wall time its voice starts, wall time its voice ends, events seen before it)."""
    seen = len(caller.events)
    start_s, _ = caller.say(read_audio(item.path))
    voice_start, voice_end = caller.track.wall_at(start_s + item.voice_start_s), caller.track.wall_at(start_s + item.voice_end_s)
    await asyncio.sleep(max(0.0, voice_end - time.monotonic()))  # the track plays in real time
    return voice_start, voice_end, seen


async def test_the_turn_is_held_through_a_mid_clause_pause_and_taken_soon_after_the_answer_and_at_the_fallback(
    model_server, answers
):
    caller = HeadlessCaller(model_server.base_url, b"", role="software_engineer", difficulty="easy")
    await caller.connect()
    try:
        # 1. An answer with a 1.5 s pause after "the invention of".
        await wait_listening(caller, after=0)
        item = answers[HELD]
        voice_start, voice_end, seen = await answer(caller, item)
        replied = await caller.wait_until(lambda c: any(f.wall > voice_end for f in c.audible_frames(voice_end)), 10)
        assert replied, "no reply to a finished answer"
        spoken_during = [f.wall for f in caller.audible_frames(voice_start) if f.wall < voice_end]
        assert spoken_during == [], "the interviewer talked during the answer"
        ends = [e for e in caller.events[seen:] if e.event["type"] == "speech_end" and not e.event["dropped"]]
        assert [e.event["turn_complete"] for e in ends] == [True], "one utterance, across the pause"
        assert ends[0].event["ended_by"] == "model"
        first_audio = min(f.wall for f in caller.audible_frames(voice_end))
        assert first_audio - voice_end < SILENCE_RULE_S, "no sooner than the silence rule"
        final = next(e for e in caller.events[seen:] if e.event["type"] == "final")
        assert "invention" in final.event["text"].lower() and "printing" in final.event["text"].lower()

        # 2. An answer that stops on "the" and never goes on: the fallback silence ends it.
        await wait_listening(caller, after=1)
        item = answers["cut-short"]
        _, voice_end, seen = await answer(caller, item)
        replied = await caller.wait_until(lambda c: bool(c.audible_frames(voice_end)), 10)
        assert replied, "the fallback never ended the turn"
        first_audio = min(f.wall for f in caller.audible_frames(voice_end))
        (end,) = [e.event for e in caller.events[seen:] if e.event["type"] == "speech_end" and not e.event["dropped"]]
        assert end["ended_by"] == "fallback" and end["turn_complete"]
        assert FALLBACK_S <= first_audio - voice_end < FALLBACK_S + 1.5
        assert any(c["probability"] <= 0.9 or c["held_by_words"] for c in end["end_of_turn_checks"])
    finally:
        await caller.hangup()

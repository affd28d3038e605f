"""Endpointing through the real track pipeline: real speech, the real VAD, the real end-of-turn model.

The ASR engine is a stand-in that answers at once (tests/test_streaming.py):
what is pinned down here is when utterances end and why. Audio is fed
faster than real time, waiting for each end-of-turn decision where a live
call would have waited for it (`TrackPipeline.decided`), so the model's
answer lands at the same point of the audio as live. The failure paths use
stand-in models that raise or stall.
"""

import asyncio
import time

import numpy as np
import pytest

from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, read_audio
from earshot.models.turn_model import EndOfTurn, EndOfTurnModel
from earshot.server import protocol
from earshot.server.pipeline import TrackPipeline
from earshot.server.settings import Settings
from tests.conftest import corpus_file
from tests.test_streaming import CHUNK, RecordingEngine


def quiet(seconds: float, seed: int = 0) -> bytes:
    """A quiet room, not digital zero: what a microphone sends between words."""
    noise = np.random.default_rng(seed).normal(0.0, 30.0, int(seconds * SAMPLE_RATE))
    return noise.astype(np.int16).tobytes()


def speech(relative: str) -> bytes:
    return read_audio(corpus_file(relative))


class FixedModel:
    """A stand-in end-of-turn model: always the same answer, or an error, or a stall; counts its calls."""

    def __init__(self, probability: float = 0.1, fail: bool = False, stall_s: float = 0.0) -> None:
        self.probability, self.fail, self.stall_s = probability, fail, stall_s
        self.calls = 0

    def predict(self, pcm16: bytes) -> EndOfTurn:
        self.calls += 1
        if self.stall_s:
            time.sleep(self.stall_s)
        if self.fail:
            raise RuntimeError("onnx exploded")
        return EndOfTurn(self.probability, 0.001)


@pytest.fixture(scope="module")
def real_model() -> EndOfTurnModel:
    return EndOfTurnModel.load()


async def run(pcm: bytes, model, hold_unfinished_turns: bool = True, heard: str = "hello there", **settings) -> list[protocol.Event]:
    published: list[protocol.Event] = []
    pipeline = TrackPipeline(
        "s1", RecordingEngine(text=heard), Settings(**settings), published.append, end_of_turn=model,
        hold_unfinished_turns=hold_unfinished_turns,
    )
    for offset in range(0, len(pcm), CHUNK):
        pipeline.push(pcm[offset : offset + CHUNK])
        await asyncio.sleep(0)
        await pipeline.decided()
    await pipeline.close()
    return published


def ends(events: list[protocol.Event]) -> list[protocol.SpeechEnd]:
    return [e for e in events if isinstance(e, protocol.SpeechEnd)]


def errors(events: list[protocol.Event]) -> list[protocol.Error]:
    return [e for e in events if isinstance(e, protocol.Error)]


async def test_a_finished_sentence_ends_at_the_first_check_not_after_the_silence(real_model):
    pcm = speech("utterances/LJ001-0002.wav") + quiet(2.0)  # "in being comparatively modern."
    (by_model,) = ends(await run(pcm, real_model))
    (by_silence,) = ends(await run(pcm, None, endpointing="silence"))
    assert by_model.ended_by == "model" and by_model.turn_complete
    assert [c.silence_ms for c in by_model.end_of_turn_checks] == [210]  # the first 30 ms frame at or past 200 ms
    assert by_model.end_of_turn_checks[0].probability > 0.9
    assert by_silence.ended_by == "silence" and not by_silence.turn_complete and not by_silence.end_of_turn_checks
    # The same end of voice; the model's end comes 0.2-0.3 s after it, the silence rule's 0.5 s after it.
    assert by_model.end_s == by_silence.end_s
    assert by_model.emitted_audio_s - by_model.end_s < 0.35
    assert by_silence.emitted_audio_s - by_silence.end_s >= 0.5


async def test_an_incomplete_turn_stays_open_through_a_long_pause_and_ends_at_the_fallback():
    model = FixedModel(probability=0.1)  # "not done yet", every time
    first, second = speech("utterances/LJ001-0001.wav"), speech("utterances/LJ001-0002.wav")
    events = await run(first + quiet(1.5) + second + quiet(3.0), model)
    (end,) = ends(events)  # one utterance across the 1.5 s pause: no cut, no end of turn in it
    assert end.ended_by == "fallback" and end.turn_complete
    assert end.emitted_audio_s - end.end_s >= 2.5
    assert model.calls >= 2 and len(end.end_of_turn_checks) == model.calls  # asked in the pause and at the end
    assert not errors(events)


async def test_in_an_assist_call_the_model_ends_utterances_sooner_but_never_later():
    first, second = speech("utterances/LJ001-0001.wav"), speech("utterances/LJ001-0002.wav")
    events = await run(first + quiet(1.5) + second + quiet(1.5), FixedModel(0.1), hold_unfinished_turns=False)
    assert [(e.ended_by, e.turn_complete) for e in ends(events)] == [("silence", False), ("silence", False)]
    assert all(0.5 <= e.emitted_audio_s - e.end_s < 0.6 for e in ends(events))
    events = await run(second + quiet(1.5), FixedModel(0.99), hold_unfinished_turns=False)
    (end,) = ends(events)
    assert end.ended_by == "model" and end.emitted_audio_s - end.end_s < 0.35


@pytest.mark.parametrize("heard", ["the invention of movable metal letters in the middle of", "we used gradient boosting and, um..."])
async def test_a_complete_sounding_pause_is_held_when_the_words_stop_mid_phrase(heard):
    model = FixedModel(probability=0.99)  # the audio model says "done"
    pcm = speech("utterances/LJ001-0002.wav") + quiet(3.0)
    (end,) = ends(await run(pcm, model, heard=heard))
    assert end.ended_by == "fallback"
    assert end.end_of_turn_checks and all(c.held_by_words for c in end.end_of_turn_checks)
    (end,) = ends(await run(pcm, model, heard=heard, end_of_turn_check_words=False))
    assert end.ended_by == "model" and not end.end_of_turn_checks[0].held_by_words


async def test_where_no_turn_is_taken_a_pause_after_a_digit_group_is_left_to_the_silence_rule():
    model = FixedModel(probability=0.99)
    pcm = speech("utterances/LJ001-0002.wav") + quiet(1.5)
    (end,) = ends(await run(pcm, model, hold_unfinished_turns=False, heard="You can reach me at 415."))
    assert end.ended_by == "silence" and all(c.held_by_words for c in end.end_of_turn_checks)
    # Words that end a sentence: the model ends it at once. In an interview a number is not held.
    (end,) = ends(await run(pcm, model, hold_unfinished_turns=False, heard="You can reach me by phone."))
    assert end.ended_by == "model"
    (end,) = ends(await run(pcm, model, heard="I graduated in 2019."))
    assert end.ended_by == "model"


def test_a_number_read_out_is_heard_to_go_on():
    from earshot.models.turn_text import ends_on_a_number

    for text in ("You can reach me at 415.", "my card is 4111 1111", "it's 555-0134", "4111,"):
        assert ends_on_a_number(text), text
    for text in ("I have two kids.", "in 2019 we moved to Boston", "version 2 point", ""):
        assert not ends_on_a_number(text), text


async def test_the_silence_rule_cuts_the_same_pause_in_two():
    first, second = speech("utterances/LJ001-0001.wav"), speech("utterances/LJ001-0002.wav")
    events = await run(first + quiet(1.5) + second + quiet(1.5), None, endpointing="silence")
    assert [e.ended_by for e in ends(events)] == ["silence", "silence"]


async def test_later_checks_are_asked_as_the_silence_grows():
    model = FixedModel(probability=0.1)
    pcm = speech("utterances/LJ001-0002.wav") + quiet(3.0)
    (end,) = ends(await run(pcm, model, end_of_turn_checks_ms="200,600,1200"))
    assert [c.silence_ms for c in end.end_of_turn_checks] == [210, 600, 1200]
    assert end.ended_by == "fallback"


@pytest.mark.parametrize("model", [FixedModel(fail=True), FixedModel(probability=0.99, stall_s=0.3)], ids=["error", "timeout"])
async def test_a_failing_model_ends_that_turn_by_the_silence_rule_and_says_so_once(model):
    pcm = speech("utterances/LJ001-0002.wav") + quiet(2.0)
    events = await run(pcm, model, end_of_turn_timeout_ms=100)
    (end,) = ends(events)
    assert end.ended_by == "silence" and not end.turn_complete
    assert 0.5 <= end.emitted_audio_s - end.end_s < 0.6  # end_of_speech_ms, not the 2.5 s fallback
    (error,) = errors(events)
    assert error.code == "turn_model_failed" and error.detail["fallback"] == "silence"
    # The next utterance asks the model again.
    events = await run(pcm + pcm, model, end_of_turn_timeout_ms=100)
    assert [e.ended_by for e in ends(events)] == ["silence", "silence"] and len(errors(events)) == 2


async def test_a_very_short_sound_is_never_asked_about_and_never_ends_a_turn():
    model = FixedModel(probability=0.99)
    clip = speech("utterances/LJ001-0002.wav")
    start = int(0.3 * SAMPLE_RATE) * BYTES_PER_SAMPLE  # the clip's voice starts near 0.3 s
    burst = clip[start : start + int(0.25 * SAMPLE_RATE) * BYTES_PER_SAMPLE]  # a quarter second: the VAD counts 0.45 s
    events = await run(quiet(0.5) + burst + quiet(2.0), model)
    assert model.calls == 0
    assert all(e.ended_by == "short" and not e.turn_complete for e in ends(events))
    assert ends(events), "the burst should still open and close an utterance"


async def test_noise_and_silence_never_ask_the_model():
    model = FixedModel(probability=0.99)
    for name in ("silence-8s", "white-noise-8s", "hum-and-clicks-8s"):
        events = await run(speech(f"nonspeech/{name}.wav"), model)
        assert all(not e.turn_complete for e in ends(events)), name
    assert model.calls == 0


def test_words_that_never_end_a_sentence():
    from earshot.models.turn_text import sounds_unfinished

    for text in ("in the middle of", "on the", "and, um,", "the hardest part was the", "I think that-", "we tried..."):
        assert sounds_unfinished(text), text
    for text in ("That's how we cut churn by eight percent.", "That's all.", "I think so.", "Yes, I can.",
                 "what it's about", "That's how it was", ""):
        assert not sounds_unfinished(text), text


@pytest.mark.parametrize("content", [None, b"not an onnx model"], ids=["missing", "not-a-model"])
def test_a_model_that_will_not_load_stops_the_start_with_its_path_and_what_to_install(redis_url, tmp_path, content):
    from tests.conftest import serve_expecting_failure

    path = tmp_path / "smart-turn.onnx"
    if content is not None:
        path.write_bytes(content)
    done = serve_expecting_failure(redis_url, tmp_path, "--end-of-turn-model", str(path))
    assert done.returncode != 0
    assert str(path) in done.stderr and "--endpointing silence" in done.stderr
    if content is None:
        assert "pipecat-ai" in done.stderr  # what to install for the bundled one
    assert "Traceback" not in done.stderr


def test_a_threshold_outside_0_to_1_is_refused():
    from earshot.server.endpointing import EndpointingConfig

    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            EndpointingConfig(mode="model", threshold=bad)

"""SessionVoice: prepared speech played on the track, words released as heard, TTS failure -> text only."""

from __future__ import annotations

import asyncio

import pytest

from earshot.models.tts import PiperTts, TtsError
from earshot.server.interviewer_voice import PhraseCache, SessionVoice


class BrokenTts:
    """A TTS whose engine died (e.g. ONNX Runtime out of memory)."""

    calls = 0

    async def synthesize(self, text: str):
        self.calls += 1
        raise TtsError("onnxruntime: failed to allocate memory")


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    tts = PiperTts.load()
    yield tts
    tts.close()


async def drain_track(voice: SessionVoice, stop: asyncio.Event) -> int:
    """Pull frames as aiortc's sender would; returns how many were taken."""
    frames = 0
    while not stop.is_set():
        await voice.track.recv()
        frames += 1
    return frames


async def test_tts_failure_goes_on_in_text_with_one_notice():
    failures: list[str] = []
    tts = BrokenTts()
    voice = SessionVoice(PhraseCache(tts), lambda uid: None, lambda end: None, failures.append)
    heard: list[str] = []
    result = await voice.play(1, voice.prepare(["First sentence.", "Second sentence."]), heard.append)
    assert heard == ["First sentence.", "Second sentence."]
    assert not result.interrupted and result.text == "First sentence. Second sentence."
    assert len(failures) == 1 and "allocate" in failures[0]
    heard.clear()
    await voice.play(2, voice.prepare(["Third."]), heard.append)
    assert heard == ["Third."] and tts.calls == 1  # text only from then on: no retry per sentence
    voice.close()


async def test_words_are_released_as_their_audio_starts_and_a_cut_keeps_only_what_was_heard(piper):
    starts, ends = [], []
    voice = SessionVoice(PhraseCache(piper), starts.append, ends.append, lambda message: None)
    stop = asyncio.Event()
    pump = asyncio.ensure_future(drain_track(voice, stop))
    heard: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    speech = voice.prepare(["Hello there.", "This is the second sentence, which is longer.", "And a third."])
    playing = asyncio.ensure_future(voice.play(7, speech, lambda s: heard.append((loop.time(), s))))
    while len(heard) < 2:
        await asyncio.sleep(0.01)
    voice.stop()  # barge-in during the second sentence
    result = await asyncio.wait_for(playing, 5)
    stop.set()
    await pump
    assert [s for _, s in heard] == ["Hello there.", "This is the second sentence, which is longer."]
    assert heard[1][0] - heard[0][0] > 0.4  # the second came out when the first had been said, not at once
    assert result.interrupted and "And a third" not in result.spoken_text
    assert starts == [7] and ends[0].utterance_id == 7 and ends[0].interrupted
    voice.close()

"""The track pipeline's scheduling and events, on real speech, with a stand-in engine that records requests.

The engine is the only stand-in: the audio, the VAD, the decode scheduling
(StreamingAsr) and the assembly into wire events (TrackPipeline) are real.
What these tests pin down is which decodes are asked for, and what is published.
"""

import asyncio

from earshot.models.asr import Transcript, Word
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, read_audio
from earshot.server import protocol
from earshot.server.pipeline import ResumePoint, TrackPipeline
from earshot.server.settings import Settings
from tests.conftest import corpus_file

SILENCE_1S = bytes(SAMPLE_RATE * BYTES_PER_SAMPLE)
CHUNK = SAMPLE_RATE * 20 // 1000 * BYTES_PER_SAMPLE  # 20 ms, as a browser sends


class RecordingEngine:
    def __init__(self, fail_finals: bool = False, text: str = "hello there") -> None:
        self.requests: list[tuple[bool, int]] = []  # (final, audio bytes)
        self.fail_finals = fail_finals
        self.text = text

    async def transcribe(self, stream_id: str, pcm16: bytes, final: bool):
        self.requests.append((final, len(pcm16)))
        await asyncio.sleep(0)  # answers at the next loop turn: faster than any real model
        if final and self.fail_finals:
            raise RuntimeError("model exploded")
        seconds = len(pcm16) / (SAMPLE_RATE * BYTES_PER_SAMPLE)
        return Transcript(self.text, (Word("hello", 0.1, 0.5, 0.9), Word("there", 0.6, 1.0, 0.9)), seconds, 0.0, 0.01)

    def forget_stream(self, stream_id: str) -> None:
        pass


async def run(engine, pcm: bytes, resume: ResumePoint = ResumePoint()) -> list[protocol.Event]:
    published: list[protocol.Event] = []
    # The silence rule: what these tests pin down is its decode scheduling (tests/test_endpointing.py: the model)
    pipeline = TrackPipeline("s1", engine, Settings(endpointing="silence"), published.append, resume)
    for offset in range(0, len(pcm), CHUNK):
        pipeline.push(pcm[offset : offset + CHUNK])
        await asyncio.sleep(0)  # let decode tasks run between 20 ms chunks
    await pipeline.close()
    return published


def of(kind: type, events: list[protocol.Event]) -> list:
    return [e for e in events if isinstance(e, kind)]


async def test_one_final_decode_when_the_pause_becomes_the_end():
    engine = RecordingEngine()
    events = await run(engine, read_audio(corpus_file("utterances/LJ001-0002.wav")) + SILENCE_1S)
    finals = of(protocol.Final, events)
    assert len(finals) == 1
    # The speculative decode started at the pause was the one used: exactly one final request.
    assert [final for final, _ in engine.requests].count(True) == 1
    assert finals[0].words[0].start >= 0.0 and finals[0].text == "hello there" and finals[0].seq == 1


async def test_an_utterance_s_events_come_in_the_order_of_its_life():
    engine = RecordingEngine()
    events = await run(engine, read_audio(corpus_file("utterances/LJ001-0001.wav")) + SILENCE_1S)
    kinds = [e.type for e in events if e.type != "pace"]
    assert kinds[0] == "voice_onset" and kinds[1] == "speech_start"
    assert kinds.index("speech_end") > max(i for i, k in enumerate(kinds) if k == "partial")
    assert kinds[-1] == "final"
    partials = of(protocol.Partial, events)
    assert partials and all(b.audio_end_s >= a.audio_end_s for a, b in zip(partials, partials[1:]))
    final_pace = [p for p in of(protocol.Pace, events) if p.final]
    assert len(final_pace) == 1 and events.index(final_pace[0]) > events.index(of(protocol.Final, events)[0])


async def test_a_resumed_stream_continues_its_clock_and_numbering():
    engine = RecordingEngine()
    resume = ResumePoint(audio_s=100.0, next_utterance_id=7, next_final_seq=4)
    events = await run(engine, read_audio(corpus_file("utterances/LJ001-0002.wav")) + SILENCE_1S, resume)
    (final,) = of(protocol.Final, events)
    assert final.utterance_id == 7 and final.seq == 4 and final.start >= 100.0


async def test_a_failed_decode_is_reported_and_the_stream_goes_on():
    engine = RecordingEngine(fail_finals=True)
    clip = read_audio(corpus_file("utterances/LJ001-0002.wav"))
    events = await run(engine, clip + SILENCE_1S + clip + SILENCE_1S)
    failures = [e for e in of(protocol.Error, events) if e.code == "asr_failed"]
    ended = of(protocol.SpeechEnd, events)
    assert len(failures) == 2 and len(ended) == 2  # the second utterance was still heard
    # The client hears that it failed and which utterance; the engine's own words go to the log only.
    assert failures[0].message and "model exploded" not in failures[0].message and failures[0].detail["utterance_id"] == 1
    no_finals = of(protocol.NoFinal, events)  # each failed utterance also closes with its no_final
    assert [(n.utterance_id, n.reason) for n in no_finals] == [(1, "asr_failed"), (2, "asr_failed")]


async def test_an_utterance_with_no_words_closes_with_a_no_final():
    engine = RecordingEngine(text="")  # Whisper found nothing it would stand behind
    events = await run(engine, read_audio(corpus_file("utterances/LJ001-0002.wav")) + SILENCE_1S)
    assert of(protocol.Final, events) == []
    (end,) = of(protocol.SpeechEnd, events)
    (no_final,) = of(protocol.NoFinal, events)
    assert not end.dropped and no_final.utterance_id == end.utterance_id and no_final.reason == "no_words"
    assert events.index(no_final) > events.index(end)


async def test_nothing_is_decoded_for_silence():
    engine = RecordingEngine()
    events = await run(engine, SILENCE_1S * 5)
    assert engine.requests == [] and events == []

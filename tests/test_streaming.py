"""StreamingTranscriber's scheduling, on real speech, with a stand-in engine that records requests.

The engine is the only stand-in: the audio, the VAD and the scheduling are real.
What these tests pin down is which decodes are asked for, and what is emitted.
"""

import asyncio

from models.asr import Transcript, Word
from models.audio import read_wav
from models.streaming import AsrFailed, FinalResult, PartialResult, StreamingConfig, StreamingTranscriber, UtteranceEnded
from tests.conftest import corpus_file

SILENCE_1S = bytes(16000 * 2)


class RecordingEngine:
    def __init__(self, fail_finals: bool = False) -> None:
        self.requests: list[tuple[bool, int]] = []  # (final, audio bytes)
        self.fail_finals = fail_finals

    async def transcribe(self, stream_id: str, pcm16: bytes, final: bool):
        self.requests.append((final, len(pcm16)))
        await asyncio.sleep(0)  # answers at the next loop turn: faster than any real model
        if final and self.fail_finals:
            raise RuntimeError("model exploded")
        seconds = len(pcm16) / 32000
        return Transcript("hello there", (Word("hello", 0.1, 0.5, 0.9), Word("there", 0.6, 1.0, 0.9)), seconds, 0.0, 0.01)

    def forget_stream(self, stream_id: str) -> None:
        pass


async def run(engine, pcm: bytes, realtime_chunks: bool = True) -> list:
    outputs = []

    async def emit(output):
        outputs.append(output)

    transcriber = StreamingTranscriber(engine, StreamingConfig(), "s1", emit)
    for offset in range(0, len(pcm), 640):
        await transcriber.push(pcm[offset : offset + 640])
        if realtime_chunks:
            await asyncio.sleep(0)  # let decode tasks run between 20 ms chunks
    await transcriber.close()
    return outputs


async def test_one_final_decode_when_the_pause_becomes_the_end():
    engine = RecordingEngine()
    outputs = await run(engine, read_wav(corpus_file("utterances/LJ001-0002.wav")) + SILENCE_1S)
    finals = [o for o in outputs if isinstance(o, FinalResult)]
    assert len(finals) == 1
    # The speculative decode started at the pause was the one used: exactly one final request.
    assert [final for final, _ in engine.requests].count(True) == 1
    assert finals[0].words[0].start >= 0.0 and finals[0].text == "hello there"


async def test_partials_come_before_the_final_and_carry_the_audio_they_heard():
    engine = RecordingEngine()
    outputs = await run(engine, read_wav(corpus_file("utterances/LJ001-0001.wav")) + SILENCE_1S)
    partials = [o for o in outputs if isinstance(o, PartialResult)]
    assert partials
    assert outputs.index(partials[-1]) < outputs.index(next(o for o in outputs if isinstance(o, FinalResult)))
    assert all(b.audio_end_s >= a.audio_end_s for a, b in zip(partials, partials[1:]))


async def test_a_failed_decode_is_reported_and_the_stream_goes_on():
    engine = RecordingEngine(fail_finals=True)
    clip = read_wav(corpus_file("utterances/LJ001-0002.wav"))
    outputs = await run(engine, clip + SILENCE_1S + clip + SILENCE_1S)
    failures = [o for o in outputs if isinstance(o, AsrFailed)]
    ended = [o for o in outputs if isinstance(o, UtteranceEnded)]
    assert len(failures) == 2 and len(ended) == 2  # the second utterance was still heard
    assert "model exploded" in failures[0].message


async def test_nothing_is_decoded_for_silence():
    engine = RecordingEngine()
    outputs = await run(engine, SILENCE_1S * 5)
    assert engine.requests == [] and outputs == []


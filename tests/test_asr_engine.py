"""The shared Whisper engine with the real tiny.en model: batched partials, the FIFO baseline, the observer."""

import asyncio
import threading

import pytest
from faster_whisper import WhisperModel

from earshot.loadtest.wer import word_errors
from earshot.models.asr import AsrConfig, AsrEngine
from earshot.models.audio import read_audio
from tests.conftest import corpus_file, reference_text

CLIPS = ("utterances/LJ001-0002.wav", "utterances/LJ001-0004.wav", "utterances/LJ001-0005.wav")


@pytest.fixture(scope="module")
def audio():
    return {clip: read_audio(corpus_file(clip)) for clip in CLIPS}


def engine(**config) -> tuple[AsrEngine, list]:
    seen: list = []
    asr = AsrEngine.load(AsrConfig(workers=1, **config))
    asr.observe(seen.append)
    return asr, seen


async def partials_while_busy(asr: AsrEngine, busy_pcm: bytes, requests: list[tuple[str, bytes]]):
    """Occupy the one worker with a final, queue the partials meanwhile, return their results."""
    busy = asyncio.ensure_future(asr.transcribe("busy", busy_pcm, final=True))
    await asyncio.sleep(0.05)  # the worker has taken the final
    results = await asyncio.gather(*(asr.transcribe(stream, pcm, final=False) for stream, pcm in requests))
    await busy
    return results


def test_partials_of_several_streams_decode_together_as_well_as_alone(audio):
    batched, seen = engine(max_batch=4)
    alone, _ = engine(max_batch=1)
    try:
        requests = [(f"s{i}", audio[clip]) for i, clip in enumerate(CLIPS)]
        together = asyncio.run(partials_while_busy(batched, audio[CLIPS[0]], requests))
        separate = asyncio.run(partials_while_busy(alone, audio[CLIPS[0]], requests))
    finally:
        batched.close()
        alone.close()
    assert [s.batch_size for s in seen if not s.final] == [3, 3, 3]
    assert all(s.inference_s > 0 and s.queued_s > 0 for s in seen)
    for clip, batch_result, single_result in zip(CLIPS, together, separate):
        reference = reference_text(clip)
        batch_errors, words = word_errors(reference, batch_result.text)
        single_errors, _ = word_errors(reference, single_result.text)
        assert batch_errors <= single_errors + 1 and batch_errors / words < 0.2, (batch_result.text, single_result.text)


def test_fifo_baseline_decodes_every_partial_and_fair_drops_stale_ones(audio):
    pcm = audio[CLIPS[1]]
    older, newer = pcm[: len(pcm) // 2], pcm
    for scheduling, older_result in (("fifo", "decoded"), ("fair", None)):
        asr, seen = engine(scheduling=scheduling)
        try:
            first, second = asyncio.run(partials_while_busy(asr, audio[CLIPS[0]], [("a", older), ("a", newer)]))
        finally:
            asr.close()
        assert second is not None and second.text
        if older_result is None:
            assert first is None  # replaced by the newer partial before it was decoded
        else:
            assert first is not None and first.text
        assert len([s for s in seen if not s.final]) == (2 if scheduling == "fifo" else 1)


def test_an_observer_failure_does_not_stop_transcription(audio):
    asr = AsrEngine.load(AsrConfig(workers=1))
    asr.observe(lambda stats: 1 / 0)
    try:
        result = asyncio.run(asr.transcribe("a", audio[CLIPS[0]], final=True))
    finally:
        asr.close()
    assert "modern" in result.text.lower()


def test_loading_runs_the_model_once_per_worker_at_once(monkeypatch):
    """Each CTranslate2 replica allocates on its own first call: load pays that, not the first finals.

    Silence sent through the speech check never reaches Whisper, so load must call the model itself.
    """
    callers: list[str] = []
    encode = WhisperModel.encode

    def counted(model, *args, **kwargs):
        callers.append(threading.current_thread().name)
        return encode(model, *args, **kwargs)

    monkeypatch.setattr(WhisperModel, "encode", counted)
    asr = AsrEngine.load(AsrConfig(workers=2))
    asr.close()
    assert len(callers) == 2 and len(set(callers)) == 2, callers  # one call per worker, side by side

"""Piper TTS with the bundled voice.

The audio checks are real: the bundled voice speaks, and the repo's Whisper
must hear the words back, which proves the audio is speech and not just noise.
"""

import asyncio
import difflib
import re

import numpy as np
import pytest

from earshot.models.audio import SAMPLE_RATE, resample
from earshot.models.model_files import ModelMissingError
from earshot.models.tts import OUTPUT_RATE, PiperTts, TtsError, bundled_voice_path

SENTENCE = "Tell me about a time you disagreed with your manager."


@pytest.fixture(scope="module")
def tts():
    engine = PiperTts.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def spoken(tts):
    return asyncio.run(tts.synthesize(SENTENCE))


def test_the_bundled_voice_speaks_a_sentence_at_48k(spoken):
    assert spoken.sample_rate == OUTPUT_RATE == 48000
    assert spoken.pcm.dtype == np.int16 and spoken.pcm.ndim == 1
    words = len(SENTENCE.split())
    assert 0.2 * words <= spoken.duration_s <= 0.8 * words
    rms = np.sqrt(np.mean(spoken.pcm.astype(np.float64) ** 2))
    assert rms > 1000  # speech at a normal level, not near-silence
    assert np.abs(spoken.pcm).max() < 32767  # headroom kept: no clipping
    assert 0 < spoken.synth_s < spoken.duration_s  # faster than real time


def test_whisper_hears_the_words_back(spoken):
    from earshot.models.asr import AsrConfig, AsrEngine

    engine = AsrEngine.load(AsrConfig())
    try:
        pcm16k = resample(spoken.pcm, OUTPUT_RATE, SAMPLE_RATE)
        result = asyncio.run(engine.transcribe("tts", pcm16k.tobytes(), final=True))
    finally:
        engine.close()
    heard = re.sub(r"[^a-z ]", "", result.text.lower()).split()
    expected = re.sub(r"[^a-z ]", "", SENTENCE.lower()).split()
    # Piper samples its prosody, so each rendering differs a little; one slip in ten words is allowed.
    matcher = difflib.SequenceMatcher(a=expected, b=heard)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    assert matched >= len(expected) - 1 and len(heard) <= len(expected) + 1, result.text


async def test_empty_text_is_an_error(tts):
    for text in ("", "   \n"):
        with pytest.raises(TtsError):
            await tts.synthesize(text)


async def test_a_closed_engine_says_so():
    engine = PiperTts.load()
    engine.close()
    with pytest.raises(TtsError, match="closed"):
        await engine.synthesize("Hello.")


def test_a_bad_voice_path_names_the_problem(tmp_path):
    with pytest.raises(ModelMissingError, match="not found"):
        PiperTts.load(str(tmp_path / "nope.onnx"))
    lonely = tmp_path / "voice.onnx"
    lonely.write_bytes(b"not a model")
    with pytest.raises(ModelMissingError, match=r"voice\.onnx\.json"):
        PiperTts.load(str(lonely))
    (tmp_path / "voice.onnx.json").write_text("{}")
    with pytest.raises(ModelMissingError, match="not a loadable Piper voice"):
        PiperTts.load(str(lonely))


def test_the_bundled_voice_is_the_package_file():
    path = bundled_voice_path()
    assert path.name == "en_US-joe-medium.onnx" and path.is_file()

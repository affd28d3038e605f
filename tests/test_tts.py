"""Piper TTS with the bundled voice, and the sentence splitting that feeds it.

The audio checks are real: the bundled voice speaks, and the repo's Whisper
must hear the words back, which proves the audio is speech and not just noise.
"""

import asyncio
import difflib
import random
import re

import numpy as np
import pytest

from earshot.models.audio import SAMPLE_RATE, resample
from earshot.models.model_files import ModelMissingError
from earshot.models.tts import (
    OUTPUT_RATE,
    PiperTts,
    SentenceBuffer,
    TtsError,
    bundled_voice_path,
    split_sentences,
)

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


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
        ("I met Dr. Smith at 3.5 p.m. yesterday. It went well.", ["I met Dr. Smith at 3.5 p.m. yesterday.", "It went well."]),
        ("Pick a language, e.g. Python or Go. Then say why.", ["Pick a language, e.g. Python or Go.", "Then say why."]),
        ("We shipped v2.0 to the U.S. market. Great.", ["We shipped v2.0 to the U.S. market.", "Great."]),
        ("Well... let me think. Okay.", ["Well... let me think.", "Okay."]),
        ("What is 2.5 times 4? Take your time.", ["What is 2.5 times 4?", "Take your time."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("Two points:\n1. Scope it.\n2. Ship it", ["Two points:", "1. Scope it.", "2. Ship it"]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("no final punctuation", ["no final punctuation"]),
        ("  ", []),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_a_run_on_is_cut_at_a_clause():
    text = "First we gathered the requirements from every team involved, " * 6
    parts = split_sentences(text)
    assert len(parts) > 1 and all(len(p) <= 240 for p in parts)
    assert " ".join(parts) == text.strip()


def test_the_buffer_gives_each_sentence_as_soon_as_it_is_certain():
    buffer = SentenceBuffer()
    assert buffer.feed("Why is th") == []
    assert buffer.feed("at?") == []  # a closing quote could still follow
    assert buffer.feed(" Because") == ["Why is that?"]
    assert buffer.feed(" it costs 3.") == []  # "3." may become "3.5"
    assert buffer.feed("5 dollars.") == []
    assert buffer.feed(" Dr.") == ["Because it costs 3.5 dollars."]
    assert buffer.feed(" Smith agr") == []  # not "Dr." alone
    assert buffer.flush() == ["Dr. Smith agr"]
    assert buffer.flush() == []


def test_the_buffer_agrees_with_split_sentences_however_the_text_is_cut():
    text = (
        "Great answer. Could you say more, e.g. about the U.S. launch at 9 a.m. on day one? "
        'She said "done." Well... I see.\nNext: tell me about v1.5 of the API! And Dr. Lee\'s role'
    )
    rng = random.Random(7)
    for _ in range(30):
        buffer, out, i = SentenceBuffer(), [], 0
        while i < len(text):
            n = rng.randint(1, 6)
            out += buffer.feed(text[i : i + n])
            i += n
        out += buffer.flush()
        assert out == split_sentences(text)

"""`earshot transcribe`: the live pipeline over files, as benchmarks and external checks use it."""

import concurrent.futures
import json
import subprocess
import sys
import wave

import pytest

from earshot.loadtest.wer import wer
from earshot.models.audio import read_audio
from tests.audio_files import encode, music
from tests.conftest import REPO, corpus_file, reference_text

# tiny.en on these clips measures 0-8% WER per clip; 15% leaves room for thread timing, not for a regression.
CLIP_WER_BOUND = 0.15


def transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "earshot.server", "transcribe", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def events_of(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_jsonl_finals_carry_audio_clock_times_and_match_the_reference():
    relative = "utterances/LJ001-0009.wav"
    events = events_of(transcribe(str(corpus_file(relative)), "--jsonl"))
    finals = [e for e in events if e["type"] == "final"]
    assert finals, events
    for final in finals:
        assert final["emitted_audio_s"] >= final["speech_end_audio_s"] > final["start"] >= 0
        assert final["words"] and all(w["start"] <= w["end"] for w in final["words"])
    text = " ".join(f["text"] for f in finals)
    assert wer([reference_text(relative)], [text]) <= CLIP_WER_BOUND, text
    assert [e["type"] for e in events].index("speech_start") < [e["type"] for e in events].index("final")


def test_realtime_partials_grow_and_arrive_before_the_final():
    events = events_of(transcribe(str(corpus_file("utterances/LJ001-0001.wav")), "--jsonl", "--realtime"))
    partials = [e for e in events if e["type"] == "partial"]
    final_index = next(i for i, e in enumerate(events) if e["type"] == "final")
    assert len(partials) >= 5
    assert all(events.index(p) < final_index for p in partials)
    # The committed text only ever grows.
    committed = [p["committed"] for p in partials]
    for earlier, later in zip(committed, committed[1:]):
        assert later.startswith(earlier)
    for partial in partials:
        assert partial["emitted_audio_s"] >= partial["audio_end_s"]
    paces = [e for e in events if e["type"] == "pace"]
    assert any(not p["final"] for p in paces), "pace must update live, before the final"
    assert paces[-1]["final"] and paces[-1]["verdict"] in ("good", "too_slow", "too_fast")


def test_nonspeech_yields_no_final_and_no_partial_text(tmp_path):
    # In real time, so partials are asked for as a live call asks; the files at once (8 s each, not 32 s).
    paths = [corpus_file(f"nonspeech/{name}") for name in ("silence-8s.wav", "white-noise-8s.wav", "hum-and-clicks-8s.wav")]
    paths.append(tmp_path / "music-8s.wav")
    with wave.open(str(paths[-1]), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(music(8.0))
    names = [p.name for p in paths]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        runs = pool.map(lambda path: transcribe(str(path), "--jsonl", "--realtime"), paths)
        for name, run in zip(names, list(runs)):
            events = events_of(run)
            assert [e for e in events if e["type"] == "final"] == [], name
            assert [e for e in events if e["type"] == "partial" and (e["committed"] or e["tentative"])] == [], name
            # What the VAD kept (the hum is voice to webrtcvad) ends with word that no final comes.
            kept = [e["utterance_id"] for e in events if e["type"] == "speech_end" and not e["dropped"]]
            no_words = [e["utterance_id"] for e in events if e["type"] == "no_final" and e["reason"] == "no_words"]
            assert no_words == kept, name
            assert kept or name not in ("hum-and-clicks-8s.wav", "music-8s.wav")


def test_stereo_channel_can_be_picked():
    events = events_of(transcribe(str(corpus_file("calls/call-1.wav")), "--jsonl", "--channel", "1"))
    text = " ".join(e["text"] for e in events if e["type"] == "final").lower()
    assert "horizon" in text and "wizard" not in text


def test_missing_model_names_what_to_do():
    result = transcribe(str(corpus_file("utterances/LJ001-0002.wav")), "--asr-model", "/nonexistent/whisper")
    assert result.returncode == 2
    assert "unknown ASR model" in result.stderr and "tiny.en" in result.stderr


FORMATS = {  # name: (codec, sample rate, channels, sample format)
    "talk.flac": ("flac", 16000, 1, "s16"),
    "talk.mp3": ("libmp3lame", 44100, 2, "s16p"),
    "talk.m4a": ("aac", 48000, 1, "fltp"),
    "talk-24bit.wav": ("pcm_s24le", 44100, 2, "s32"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_any_audio_format_is_transcribed(tmp_path, name):
    relative = "utterances/LJ001-0009.wav"
    audio = encode(read_audio(corpus_file(relative)), tmp_path / name, *FORMATS[name])
    events = events_of(transcribe(str(audio), "--jsonl"))
    text = " ".join(e["text"] for e in events if e["type"] == "final")
    assert wer([reference_text(relative)], [text]) <= CLIP_WER_BOUND, text


@pytest.mark.parametrize("name", ["notes.wav", "notes.flac"])
def test_not_audio_is_a_clear_error(tmp_path, name):
    bogus = tmp_path / name
    bogus.write_text("this is text, not audio")
    result = transcribe(str(bogus))
    assert result.returncode == 2
    assert f"{bogus}: not an audio file FFmpeg can read" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_channel_is_a_clear_error():
    result = transcribe(str(corpus_file("utterances/LJ001-0009.wav")), "--channel", "1")
    assert result.returncode == 2
    assert "has 1 channel(s), no channel 1" in result.stderr

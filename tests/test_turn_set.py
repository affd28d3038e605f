"""The end-of-turn set (bench/turn_set.py) builds from the corpus as its manifest says, the same every time.

Every check re-measures the built audio here, independently of what the
builder reports: the pauses are found again as long quiet runs of 10 ms
frames, and each cut is looked at in its source recording.
"""

from __future__ import annotations

import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.turn_set import KINDS, MIN_PAUSE_S, PAUSE_KINDS, SOURCE_NAMES, TurnItem, build_turn_set, load_manifest
from earshot.models.audio import SAMPLE_RATE, read_audio
from tests.conftest import CORPUS, corpus_file, reference_text

VOICE_RMS = 300.0  # speech_bounds' threshold: a 10 ms frame at least this loud is voice
FRAME = SAMPLE_RATE // 100
MANIFEST = load_manifest()
ENTRIES = {entry["id"]: entry for entry in MANIFEST["items"]}
# What the set holds (tests/data/turns/README.md): a change here is a change of the set
EXPECTED_KINDS = {"mid_clause": 9, "list": 6, "hesitation": 10, "complete": 13}
EXPECTED_SOURCES = {"corpus-cut": 22, "corpus-joined": 8, "piper": 8}


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[TurnItem]:
    return build_turn_set(tmp_path_factory.mktemp("turn-set"), corpus=CORPUS)


def frame_rms(pcm: np.ndarray) -> np.ndarray:
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return np.sqrt(np.mean(frames * frames, axis=1))


def quiet_runs(pcm: np.ndarray, min_s: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of every run of unvoiced frames at least `min_s` long, between the first and last voice."""
    voiced = np.flatnonzero(frame_rms(pcm) >= VOICE_RMS)
    runs = []
    for before, after in zip(voiced, voiced[1:]):
        if (after - before - 1) / 100 >= min_s:
            runs.append(((before + 1) / 100, after / 100))
    return runs


def samples(path: Path) -> np.ndarray:
    return np.frombuffer(read_audio(path), dtype=np.int16)


def test_the_set_has_its_kinds_and_sources(items):
    assert Counter(item.kind for item in items) == EXPECTED_KINDS
    assert Counter(item.source for item in items) == EXPECTED_SOURCES
    assert set(EXPECTED_KINDS) == set(KINDS) and set(EXPECTED_SOURCES) == set(SOURCE_NAMES)
    assert 0.3 <= EXPECTED_KINDS["complete"] / len(items) <= 0.4  # about a third end with no pause inside
    assert len({item.id for item in items}) == len(items)
    for item in items:
        assert item.kind == "complete" or item.pauses, item.id  # every other kind pauses inside the answer
        assert item.kind != "complete" or not item.pauses, item.id
        assert all(p.kind in PAUSE_KINDS for p in item.pauses)


def test_every_item_is_a_16k_mono_wav_that_reads(items):
    for item in items:
        with wave.open(str(item.path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE), item.id
            raw = wav.readframes(wav.getnframes())
        assert read_audio(item.path) == raw, item.id  # the pipeline's reader gives back exactly what was written
        duration = len(raw) / 2 / SAMPLE_RATE
        assert item.trailing_silence_s >= 3.0 and abs(duration - item.voice_end_s - item.trailing_silence_s) < 1e-3, item.id
        assert 2.0 <= item.voice_end_s - item.voice_start_s <= 20.0, item.id


def test_pauses_measured_again_match_the_manifest(items):
    for item in items:
        pcm = samples(item.path)
        found = quiet_runs(pcm, MIN_PAUSE_S)  # every long silence inside the answer, found from scratch
        wanted = [p["pause_s"] for p in ENTRIES[item.id]["pauses"]]
        assert len(found) == len(wanted) == len(item.pauses), (item.id, found, wanted)
        for (start, end), length, pause in zip(found, wanted, item.pauses):
            assert end - start > MIN_PAUSE_S, item.id
            assert abs((end - start) - length) <= 0.05, (item.id, start, end, length)
            assert abs(pause.start_s - start) <= 0.01 and abs(pause.end_s - end) <= 0.01, (item.id, pause, start, end)
            assert item.voice_start_s < pause.start_s < pause.end_s < item.voice_end_s
        # the put-in silence is a quiet room, not digital zero
        silences = [pcm[int(p.start_s * SAMPLE_RATE) + 5 * FRAME: int(p.end_s * SAMPLE_RATE) - 5 * FRAME] for p in item.pauses]
        for silence in [*silences, pcm[-SAMPLE_RATE:]]:
            assert 20 <= np.sqrt(np.mean(silence.astype(np.float64) ** 2)) <= 150, item.id


def test_every_cut_lies_in_quiet_audio_between_words():
    cuts = 0
    for entry in MANIFEST["items"]:
        segments = [s for s in entry["segments"] if "corpus" in s]
        for left, right in zip(segments, segments[1:]):
            if left["corpus"] != right["corpus"]:
                continue
            assert left["end"] == right["start"] and left["end"] % FRAME == 0, entry["id"]
            pcm = samples(CORPUS / left["corpus"]).astype(np.float64) * left["gain"]
            before, after = frame_rms(pcm[left["end"] - FRAME: left["end"] + FRAME])
            level = np.percentile(frame_rms(pcm), 90)  # how loud this recording's voice is
            assert max(before, after) < VOICE_RMS, (entry["id"], before, after)  # the 10 ms either side are unvoiced
            assert after < 0.1 * level, (entry["id"], after, level)  # and the cut opens a near-silent frame
            cuts += 1
    assert cuts == 15  # 9 mid_clause, 4 list, 2 hesitation with a filler


def test_sources_exist_and_texts_are_the_references():
    for entry in MANIFEST["items"]:
        assert entry["text"].strip(), entry["id"]
        corpus_segments = [s for s in entry["segments"] if "corpus" in s]
        assert entry["sources"] == sorted({s["corpus"] for s in corpus_segments}), entry["id"]
        for rel in entry["sources"]:
            corpus_file(rel)
            pieces = [s["text"] for s in corpus_segments if s["corpus"] == rel]
            assert " ".join(pieces) == reference_text(rel), (entry["id"], rel)  # a recording's pieces make its reference
        assert entry["text"] == " ".join(s["text"] for s in entry["segments"]), entry["id"]
        assert (entry["source"] == "piper") == any("piper" in s for s in entry["segments"]), entry["id"]


def test_building_twice_gives_the_same_bytes(items, tmp_path):
    again = build_turn_set(tmp_path, corpus=CORPUS)
    assert [i.id for i in again] == [i.id for i in items]
    for first, second in zip(items, again):
        assert first.path.read_bytes() == second.path.read_bytes(), first.id
        assert (first.pauses, first.voice_end_s) == (second.pauses, second.voice_end_s)

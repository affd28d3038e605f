"""`earshot loadtest` end to end: real WebRTC callers, real speech, a real server and Redis.

The short run here checks behaviour (every call got finals, the report has its
fields, the server is empty afterwards); capacity numbers live in `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller, ReceivedEvent
from earshot.loadtest.faults import FAULT_KINDS, run_fault
from earshot.loadtest.measure import CallRecord, measure_call
from earshot.loadtest.script import Clip, PlacedClip, interview_answers, lay_out, load_clips
from earshot.loadtest.server_process import free_port, start_server
from earshot.loadtest.slo import Slo
from earshot.loadtest.wer import wer
from earshot.models.audio import read_audio
from tests.audio_files import encode
from tests.conftest import CORPUS, REPO, corpus_file, reference_text

# The server frees silent or unconnected calls after these, so the faults test is quick.
CONNECT_TIMEOUT_S = 4
MEDIA_TIMEOUT_S = 3
LEVEL_FIELDS = {
    "sessions", "calls", "errors", "latency", "utterances", "wer", "server", "meets_slo", "timeline", "final_points", "per_call",
}
MEASURES = {"connect_s", "first_partial_s", "final_latency_s", "partial_lag_s", "agent_reply_s"}
PERCENTILE_FIELDS = {"count", "p50", "p90", "p95", "p99", "max", "mean"}


@pytest.fixture(scope="module")
def load_server(redis_url, tmp_path_factory):
    server = start_server(
        redis_url,
        tmp_path_factory.mktemp("load-server"),
        extra_args=("--connect-timeout-s", str(CONNECT_TIMEOUT_S), "--media-timeout-s", str(MEDIA_TIMEOUT_S)),
    )
    yield server
    server.stop()


def live_sessions(server) -> int:
    return httpx.get(server.base_url + "/healthz", timeout=5).json()["live_sessions"]


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "earshot.server", "loadtest", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_two_sessions_for_ten_seconds(load_server, tmp_path):
    out = tmp_path / "report"
    result = run_cli(
        "--url", load_server.base_url, "--sessions", "2", "--duration", "10", "--ramp-up", "1",
        "--audio", str(CORPUS / "utterances"), "--slo", "p95 final_latency <= 5", "--out", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "loadtest.json").read_text())
    assert report["schema"] == "earshot-loadtest/1"
    assert {"config", "machine", "slo", "capacity", "levels", "faults", "started_at", "finished_at", "server_after"} <= set(report)
    (level,) = report["levels"]
    assert LEVEL_FIELDS <= set(level)
    assert set(level["latency"]) == MEASURES
    assert all(set(p) == PERCENTILE_FIELDS for p in level["latency"].values())

    # Every session connected and got finals for every clip it spoke.
    assert level["calls"] == {"started": 2, "connected": 2, "completed": 2, "failed": 0}
    assert level["errors"] == {}
    assert all(call["finals"] >= 1 and call["session_id"] for call in level["per_call"])
    assert level["utterances"]["sent"] >= 2 and level["utterances"]["missed"] == 0
    latency = level["latency"]["final_latency_s"]
    assert latency["count"] == level["utterances"]["finalized"]
    # A final cannot come before the 0.5 s of end-of-speech silence has been sent.
    assert 0.4 < latency["p50"] < 5
    assert level["latency"]["connect_s"]["count"] == 2
    assert level["latency"]["partial_lag_s"]["count"] > 0
    assert level["wer"] is not None and level["wer"] < 0.25  # load must not silently cost accuracy
    assert level["meets_slo"] is True and report["capacity"]["sessions"] == 2

    # The server's side, scraped from /metrics each second.
    assert len(level["timeline"]) >= 5
    assert level["server"]["live_sessions_max"] == 2
    assert level["server"]["cpu_percent"]["max"] > 0
    assert level["server"]["live_sessions_after"] == 0
    assert report["server_after"]["live_sessions"] == 0 and report["server_after"]["asr_queue_depth"] == 0
    assert live_sessions(load_server) == 0

    # The table and the plots a user reads.
    assert (out / "loadtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loadtest.html" in result.stdout and (out / "loadtest.html").is_file()
    assert "capacity" in result.stdout


def test_fault_callers_are_freed_and_others_unaffected(load_server):
    clip = corpus_file("utterances/LJ001-0001.wav")

    async def scenario():
        normal = HeadlessCaller(load_server.base_url, read_audio(clip), mode="transcribe")
        await normal.connect()
        faults = await asyncio.gather(*(run_fault(kind, load_server.base_url, corpus_file("utterances/LJ001-0002.wav")) for kind in FAULT_KINDS))
        await normal.wait_until(lambda c: bool(c.of_type("final")), timeout=15)
        text = " ".join(e["text"] for e in normal.of_type("final"))
        errors = [e for e in normal.of_type("error")]
        await normal.hangup()
        return faults, text, errors

    faults, text, errors = asyncio.run(scenario())
    by_kind = {f.kind: f for f in faults}
    assert set(by_kind) == set(FAULT_KINDS)
    for fault in faults:
        assert fault.error is None, fault
        assert fault.freed_after_s is not None, fault
    # Freed by the server's own timeouts, not by luck: a vanished caller within the media timeout
    # (plus one frame wait), an unconnected one within the connect timeout.
    assert by_kind["vanish"].freed_after_s <= MEDIA_TIMEOUT_S + 3
    assert by_kind["idle"].freed_after_s <= MEDIA_TIMEOUT_S + 3
    assert by_kind["no_ice"].freed_after_s <= CONNECT_TIMEOUT_S + 3
    assert "0 held live" in by_kind["idle"].notes
    assert "malformed RTP" in by_kind["garbage_rtp"].notes
    # The well-behaved caller beside them was transcribed as usual.
    assert wer([reference_text("utterances/LJ001-0001.wav")], [text]) < 0.2 and errors == []
    assert live_sessions(load_server) == 0
    assert load_server.process.poll() is None


def test_flac_clips_are_spoken_and_scored(load_server, tmp_path):
    """--audio takes any format FFmpeg reads: a FLAC copy of a corpus clip, its reference in NAME.txt."""
    clips = tmp_path / "clips"
    clips.mkdir()
    relative = "utterances/LJ001-0002.wav"
    encode(read_audio(corpus_file(relative)), clips / "clip.flac", "flac", 16000, 1, "s16")
    (clips / "clip.txt").write_text(reference_text(relative))
    (loaded,) = load_clips(clips)
    assert loaded.pcm16 == read_audio(corpus_file(relative)) and loaded.reference == reference_text(relative)  # lossless
    out = tmp_path / "report"
    result = run_cli("--url", load_server.base_url, "--sessions", "1", "--duration", "5", "--ramp-up", "0",
                     "--audio", str(clips), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (level,) = json.loads((out / "loadtest.json").read_text())["levels"]
    assert level["calls"]["completed"] == 1 and level["utterances"]["sent"] >= 1 and level["utterances"]["missed"] == 0
    assert level["wer"] is not None and level["wer"] < 0.25


def test_folders_without_audio_and_unreadable_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    result = run_cli("--audio", str(empty), timeout=60)
    assert result.returncode == 2 and "no audio files in it" in result.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "clip.flac").write_bytes(b"not audio at all" * 64)
    result = run_cli("--audio", str(broken), timeout=60)
    assert result.returncode == 2 and "clip.flac: not an audio file FFmpeg can read" in result.stderr


def test_bad_arguments_and_no_server_give_clear_errors(tmp_path):
    result = run_cli("--sessions", "2,x", timeout=60)
    assert result.returncode == 2 and "--sessions must be numbers" in result.stderr
    result = run_cli("--audio", str(tmp_path / "missing"), timeout=60)
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    result = run_cli("--slo", "p95 latency < 1", "--audio", str(CORPUS / "utterances"), timeout=60)
    assert result.returncode == 2 and "--slo must look like" in result.stderr
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("--url", url, "--sessions", "1", "--duration", "3", "--audio", str(CORPUS / "utterances"), timeout=60)
    assert result.returncode == 2 and f"no Earshot server answers at {url}" in result.stderr


def test_slo_parsing():
    assert Slo.parse("p95 final_latency <= 1.5") == Slo("final_latency_s", "p95", 1.5)
    assert Slo.parse("p99 first_partial_s<=2s") == Slo("first_partial_s", "p99", 2.0)
    with pytest.raises(ValueError, match="measures: connect, first_partial"):
        Slo.parse("p95 nonsense <= 1")


def test_clips_are_laid_out_within_the_duration_with_references():
    clips = load_clips(CORPUS / "utterances")
    assert all(clip.reference for clip in clips)  # from the corpus manifest
    placed = lay_out(clips, duration_s=30.0, gap_s=1.0, seed=3)
    assert placed[-1].start_s + placed[-1].clip.seconds <= 30.0
    assert all(b.start_s >= a.start_s + a.clip.seconds + 1.0 - 2e-3 for a, b in zip(placed, placed[1:]))
    assert [p.clip.path for p in placed] != [p.clip.path for p in lay_out(clips, 30.0, 1.0, seed=4)]


def test_finals_are_matched_to_the_clips_they_transcribe():
    """Pure logic: latency from each clip's voice end, hallucinated finals count as errors."""
    clip = Clip(Path("a.wav"), bytes(64000), "hello there world", 0.2, 1.6)
    placed = [PlacedClip(clip, 0.0), PlacedClip(clip, 3.0)]

    def final(start, end, text, wall):
        return ReceivedEvent(wall, end, {"type": "final", "start": start, "end": end, "text": text, "utterance_id": 0})

    record = CallRecord(call=0, placed=placed, connect_s=0.05, wall_at=lambda clock: 100.0 + clock)
    record.events = [
        ReceivedEvent(100.5, 0.5, {"type": "speech_start", "utterance_id": 1, "start_s": 0.1}),
        ReceivedEvent(100.9, 0.9, {"type": "partial", "utterance_id": 1, "audio_end_s": 0.8}),
        final(0.1, 1.6, "hello there world", 102.3),
        final(2.2, 2.5, "thanks for watching", 102.9),  # in the silence between the clips
        final(3.1, 4.6, "hello world", 105.2),
    ]
    measures = measure_call(record)
    assert measures.utterances_finalized == 2
    assert [round(v, 3) for _, v in measures.final_latency_s] == [0.7, 0.6]
    assert [round(v, 3) for v in measures.first_partial_s] == [0.7]
    assert [round(v, 3) for v in measures.partial_lag_s] == [0.1]
    assert measures.word_errors == 1 + 3 and measures.reference_words == 6


def test_interview_answers_are_the_clips_that_end_a_sentence():
    clips = load_clips(CORPUS / "utterances")
    answers = interview_answers(clips)
    names = {c.path.name for c in answers}
    assert "LJ001-0002.wav" in names  # "in being comparatively modern."
    assert "LJ001-0001.wav" not in names  # "...represented in the Exhibition": the model holds it to the fallback
    assert 5 <= len(answers) < len(clips)
    unknown = [Clip(c.path, c.pcm16, None, c.speech_start_s, c.speech_end_s) for c in clips[:3]]
    assert interview_answers(unknown) == unknown  # no transcript: nothing to judge by

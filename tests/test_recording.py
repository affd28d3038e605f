"""A recorded assist call end to end, and its re-scoring with Whisper base.

A real server with `--recording` takes the two channels of the corpus's call-1
(24 s, agent and customer) as two WebRTC tracks in real time. Then: each
track's file is there, is not audio without the storage key, and decrypts to
audio as long as the record says; `rescore_call` re-transcribes both tracks
with the packaged Whisper base and redoes intents and topic; a purge deletes
the recording. The pieces (sealing, dropping, retention, rotation) are
tests/test_recording_files.py.

Measured here (2-core dev VM, shared with other jobs), word error rate over both
sides of call-1 (45 words), printed by test_rescoring_is_no_worse_than_the_live_transcript
(-s): live tiny.en finals 0.089, re-scored Whisper base 0.111 (one word: base hears
"your dark suit" as "jadaksu"); 47.6 s of audio (both tracks) decoded in 5.2 s.
Offline on the corpus's four long answers (200 s), the same FileWhisper path:
base 0.027, tiny.en 0.025. The packaged base (multilingual) is no better than
tiny.en on this corpus; a bigger CTranslate2 Whisper is one setting away
(rescore_asr_model).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import time

import av
import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.wer import wer
from earshot.models.audio import SAMPLE_RATE, read_audio, resample
from earshot.models.tts import PiperTts
from earshot.server.at_rest import Sealer
from earshot.server.recording import CallRecording
from earshot.server.recording_files import SealedWriter, open_part, parts, recording_root
from earshot.server.rescoring import NotRecorded, RecordingUnreadable, Rescorer, rescore_call
from earshot.server.settings import Settings
from tests.calls import utterances_settled
from tests.auth_fixtures import write_api_keys
from tests.conftest import REPO, corpus_file, start_server
from tests.test_assist_call import TAIL_S, call_channels, spoken_by

pytestmark = pytest.mark.slow

PHONE_SAID = "You can reach me at four one five, five five five, zero one three four. Thank you so much."


@pytest.fixture(scope="module")
def recording_server(redis_url, tmp_path_factory):
    data = tmp_path_factory.mktemp("recording-server")
    server = start_server(redis_url, data, extra_args=("--recording",))
    yield server, Settings(data_dir=data, recording=True)
    server.stop()


async def place_recorded_call(base_url: str) -> tuple[HeadlessCaller, dict, dict, dict]:
    speakers, turns = call_channels()
    duration = len(speakers["agent"]) / 2 / SAMPLE_RATE
    caller = HeadlessCaller(base_url, speakers["agent"], mode="assist", speakers=speakers)
    try:
        await caller.connect()
        await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + TAIL_S, timeout=duration + 30)
        await caller.wait_until(utterances_settled, timeout=30)
        await caller.hangup(end_session=True, keep_api=True)  # returns once the call's files are closed
        session = await caller.api("GET", "")
        privacy = await caller._api("GET", "/api/privacy")
    finally:
        await caller.close_api()
    return caller, turns, session, privacy


@pytest.fixture(scope="module")
def recorded_call(recording_server):
    server, settings = recording_server
    caller, turns, session, privacy = asyncio.run(place_recorded_call(server.base_url))
    return caller, turns, session, privacy, settings


def test_each_track_is_recorded_sealed_and_the_record_says_so(recorded_call):
    caller, _, session, privacy, settings = recorded_call
    speakers, _ = call_channels()
    sent_s = len(speakers["agent"]) / 2 / SAMPLE_RATE
    recording = session["recording"]
    assert recording["format"] == "flac" and set(recording["tracks"]) == {"agent", "customer"}
    assert privacy["audio_stored"] is True and "the audio is recorded" in privacy["consent"]["assist"]
    found = parts(settings, caller.session_id)
    assert [p.track for p in found] == ["agent", "customer"]
    sealer = Sealer.from_settings(settings)
    for part in found:
        raw = part.path.read_bytes()
        with pytest.raises(av.error.FFmpegError):  # not audio without the storage key
            av.open(io.BytesIO(raw))
        assert b"fLaC" not in raw[:4096]
        pcm = read_audio(io.BytesIO(open_part(sealer, caller.session_id, part.path)))
        seconds = len(pcm) / 2 / SAMPLE_RATE
        track = recording["tracks"][part.track]
        assert seconds == pytest.approx(track["duration_s"], abs=0.001), (part.track, seconds, track)
        assert track["dropped_s"] == 0
        # The caller sends its channel, then silence until it hangs up: at least the call, not much more.
        assert sent_s <= seconds <= sent_s + TAIL_S + 15, (part.track, seconds, sent_s)


def test_rescoring_is_no_worse_than_the_live_transcript(recorded_call):
    caller, turns, _, _, settings = recorded_call
    rescored = asyncio.run(rescore_call(caller.session_id, settings))
    result = rescored.to_dict()
    assert result["model"] == "base" and result["audio_s"] > 40 and result["decode_s"] > 0
    assert set(result) >= {"model", "transcript", "intent_counts", "topic", "audio_s", "decode_s"}
    lines = result["transcript"]
    assert {line["speaker"] for line in lines} == {"agent", "customer"}
    assert [line["start"] for line in lines] == sorted(line["start"] for line in lines)
    live_finals = sorted(caller.of_type("final"), key=lambda f: f["start"])
    reference = [spoken_by(turns, s) for s in ("agent", "customer")]
    live = wer(reference, [" ".join(f["text"] for f in live_finals if f["speaker"] == s) for s in ("agent", "customer")])
    better = wer(reference, [" ".join(line["text"] for line in lines if line["speaker"] == s) for s in ("agent", "customer")])
    print(f"\ncall-1 WER: live tiny.en {live:.3f}, re-scored Whisper base {better:.3f}; "
          f"{result['audio_s']:.1f} s of audio decoded in {result['decode_s']:.1f} s")
    # No worse than live, give or take two words of the reference's 45: on this short call the two models
    # differ by single words (call-1, measured: live tiny.en 0.089, Whisper base 0.111, one word apart).
    slack = 2 / sum(len(text.split()) for text in reference)
    assert better <= live + slack and better <= 0.2, (better, live, lines)
    # Intents of the call's label set on the better transcript, and the topic from the bundled list.
    assert all(isinstance(line["intents"], list) for line in lines)
    assert sum(result["intent_counts"].values()) == sum(len(line["intents"]) for line in lines) > 0
    assert result["topic"] is not None and set(result["topic"]) == {"name", "label", "score"}
    assert json.loads(json.dumps(result)) == result


def test_the_analytics_worker_stores_both_scorings_and_the_totals_use_the_rescored_one(recorded_call, recording_server, redis_url):
    caller, _, _, _, settings = recorded_call
    server, _ = recording_server
    worker = subprocess.run(
        [sys.executable, "-m", "earshot.server", "analytics-worker", "--until-idle", "--consumer", "rescoring",
         "--redis-url", redis_url, "--data-dir", str(settings.data_dir), "--analytics-metrics-port", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert worker.returncode == 0, worker.stderr
    facts = httpx.get(f"{server.base_url}/api/calls/{caller.session_id}", timeout=10).json()
    assert facts["scored_from"] == "rescored" and facts["rescored"]["model"] == "base"
    assert facts["live"]["source"] == "live" and facts["rescored"]["intent_counts"]
    summary = httpx.get(f"{server.base_url}/api/sessions/{caller.session_id}/summary",
                        headers={"Authorization": f"Bearer {caller.token}"}, timeout=10).json()
    assert summary["transcript"] and summary["rescored"]["model"] == "base"
    assert {line["speaker"] for line in summary["rescored"]["transcript"]} == {"agent", "customer"}


def test_the_rescored_transcript_is_redacted_as_live_finals_are(recorded_call, tmp_path):
    """A phone number said (Piper's voice, as tests/test_redaction_call.py) is a tag in the re-scored transcript."""
    *_, settings = recorded_call
    own = Settings(data_dir=tmp_path / "data", recording=True)
    session_id = "00000000c0ffee00"
    pcm = spoken_phone()

    async def record_and_rescore():
        call = CallRecording(Sealer.from_settings(own), own, session_id, "transcribe", time.time(), [""], 0.0)
        for start in range(0, len(pcm), SAMPLE_RATE * 2):
            call.recorders[""].push(pcm[start : start + SAMPLE_RATE * 2])
        await call.finish()
        return await rescore_call(session_id, own, Rescorer.shared(settings))  # the models loaded for the call above

    result = asyncio.run(record_and_rescore()).to_dict()
    said = " ".join(line["text"] for line in result["transcript"])
    assert result["mode"] == "transcribe" and {line["speaker"] for line in result["transcript"]} == {""}
    assert "[PHONE]" in said and not re.search(r"\d{3}", said), said
    assert result["topic"] is None and result["intent_counts"] == {}  # transcribe calls have neither


def spoken_phone() -> bytes:
    tts = PiperTts.load()
    try:
        audio = asyncio.run(tts.synthesize(PHONE_SAID))
    finally:
        tts.close()
    return bytes(SAMPLE_RATE) + resample(audio.pcm, audio.sample_rate, SAMPLE_RATE).tobytes()


def test_a_missing_or_broken_recording_raises_a_typed_error(recorded_call, tmp_path):
    caller, _, _, _, settings = recorded_call
    with pytest.raises(NotRecorded):
        asyncio.run(rescore_call("00000000deadbeef", settings))
    # A copy of the call's recording under another recording_dir, with the same storage keys.
    copy = Settings(data_dir=settings.data_dir, recording_dir=str(tmp_path / "copy"))
    (recording_root(copy) / caller.session_id).mkdir(parents=True)
    first, second = parts(settings, caller.session_id)
    altered = bytearray(first.path.read_bytes())
    altered[len(altered) // 2] ^= 0x40
    (recording_root(copy) / caller.session_id / first.path.name).write_bytes(bytes(altered))
    with pytest.raises(RecordingUnreadable, match="does not open"):
        asyncio.run(rescore_call(caller.session_id, copy, Rescorer.shared(settings)))
    # The key file is not where the settings say: nothing is made, nothing opens.
    keyless = Settings(data_dir=tmp_path / "nokeys", recording_dir=str(recording_root(settings)))
    with pytest.raises(RecordingUnreadable, match="storage keys"):
        asyncio.run(rescore_call(caller.session_id, keyless))
    assert not (tmp_path / "nokeys").exists()
    # Sealed properly, but not audio.
    (recording_root(copy) / caller.session_id / first.path.name).unlink()
    writer = SealedWriter(Sealer.from_settings(copy), caller.session_id, recording_root(copy) / caller.session_id / second.path.name)
    writer.write(b"this is not a FLAC stream" * 100)
    writer.close()
    with pytest.raises(RecordingUnreadable, match="does not decode"):
        asyncio.run(rescore_call(caller.session_id, copy, Rescorer.shared(settings)))


def test_the_rescore_command_says_when_a_session_has_no_recording(recording_server):
    _, settings = recording_server
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "rescore", "00000000deadbeef", "--data-dir", str(settings.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "has no recording" in result.stderr, result.stderr


def test_purging_the_session_deletes_its_recording(recording_server, recorded_call):
    server, _ = recording_server
    caller, _, _, _, settings = recorded_call
    response = httpx.delete(f"{server.base_url}/api/sessions/{caller.session_id}?purge=true",
                            headers={"Authorization": f"Bearer {caller.token}"}, timeout=30)
    assert response.status_code == 200 and response.json()["state"] == "purged", response.text
    with pytest.raises(NotRecorded):
        parts(settings, caller.session_id)
    assert not (recording_root(settings) / caller.session_id).exists()


def test_erasing_an_identity_deletes_the_recording_of_its_live_call(redis_url, tmp_path):
    """auth on: a transcribe call is recording when its identity is erased; its files go, another's stay.
    And the server's retention sweep has deleted an 8-day-old recording by then."""
    keys = write_api_keys(tmp_path / "api-keys.toml", {"rec-cand": ("candidate", "red"), "rec-root": ("admin", "ops")})
    data = tmp_path / "server"
    settings = Settings(data_dir=data, recording=True)
    other = recording_root(settings) / "00000000feedf00d"  # another identity's recording: it stays
    other.mkdir(parents=True)
    (other / "recording.json").write_text("{}")
    expired = recording_root(settings) / "00000000000e4e1d"  # 8 days old: the server's sweep deletes it at start
    expired.mkdir(parents=True)
    (expired / "recording.json").write_text(json.dumps(
        {"session_id": expired.name, "mode": "assist", "created_at": time.time() - 8 * 86400, "format": "flac"}))
    server = start_server(redis_url, data, extra_args=(
        "--recording", "--auth", "on", "--api-keys-file", str(tmp_path / "api-keys.toml"), "--no-intent-enabled"))
    speech = read_audio(corpus_file("utterances/LJ001-0001.wav"))
    caller = HeadlessCaller(server.base_url, speech, mode="transcribe", role="data_scientist", credential=keys["rec-cand"])

    async def erase_mid_call() -> httpx.Response:
        try:
            await caller.connect()
            assert await caller.wait_until(lambda c: c.of_type("final"), 40)
            assert [p.track for p in parts(settings, caller.session_id)] == ["caller"]  # being written
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                erased = await http.delete("/api/admin/identities/rec-cand/sessions",
                                           headers={"Authorization": f"Bearer {keys['rec-root']}"})
            await asyncio.sleep(2.0)  # the call has ended; nothing it still had comes back
            return erased
        finally:
            await caller.hangup(end_session=False)

    try:
        deadline = time.monotonic() + 30
        while expired.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not expired.exists()  # past retention_recordings_s (7 days): the server's sweep deleted it at start
        erased = asyncio.run(erase_mid_call())
        assert erased.status_code == 200 and erased.json()["sessions"] == [caller.session_id], erased.text
        assert not (recording_root(settings) / caller.session_id).exists()
        assert other.exists()
    finally:
        server.stop()

"""An agent-assist call end to end: the two channels of a real call recording as two WebRTC tracks.

`calls/call-1.wav` has the agent on channel 0 and the customer on channel 1,
with the turns in `call-1.json`. The headless caller sends each channel as
its own labelled track in real time; the server transcribes them apart and
sends intents, sentiment, topic, suggestions and call metrics, then stores a
summary when the call ends.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import redis

from earshot.loadtest.caller import ApiCallError, HeadlessCaller, speech_bounds
from earshot.loadtest.server_process import free_port
from earshot.loadtest.wer import wer
from earshot.server.settings import Settings
from tests.calls import utterances_settled
from tests.conftest import corpus_file, serve_expecting_failure

pytestmark = [pytest.mark.slow, pytest.mark.timed]

CALL = "calls/call-1.wav"
TAIL_S = 2.0
WER_BOUND = 0.35  # per side, over the whole call; tiny.en measured ~0.1 on these turns


def call_channels() -> tuple[dict[str, bytes], dict]:
    """speaker -> 16 kHz mono PCM of their channel, and the turns."""
    import wave

    path = corpus_file(CALL)
    turns = json.loads(path.with_suffix(".json").read_text())
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    speakers = {turns["channels"][str(channel)]: samples[:, channel].copy().tobytes() for channel in (0, 1)}
    return speakers, turns


def spoken_by(turns: dict, speaker: str) -> str:
    return " ".join(turn["text"] for turn in turns["turns"] if turn["speaker"] == speaker)


def turn_count(turns: dict, speaker: str) -> int:
    return sum(1 for t in turns["turns"] if t["speaker"] == speaker)


def talk_time(turns: dict, speaker: str, speakers: dict[str, bytes]) -> float:
    """Voiced time of a side's turns, from the audio: the turn bounds in call-1.json include silence."""
    pcm = speakers[speaker]
    total = 0.0
    for turn in (t for t in turns["turns"] if t["speaker"] == speaker):
        first, last = speech_bounds(pcm[int(turn["start"] * 16000) * 2 : int(turn["end"] * 16000) * 2])
        total += last - first
    return total


async def place_call(base_url: str) -> tuple[HeadlessCaller, dict, dict, dict, dict[str, bytes]]:
    speakers, turns = call_channels()
    duration = len(speakers["agent"]) / 2 / 16000
    caller = HeadlessCaller(base_url, speakers["agent"], mode="assist", speakers=speakers)
    try:
        await caller.connect()
        await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + TAIL_S, timeout=duration + 30)
        await caller.wait_until(utterances_settled, timeout=30)
        await caller.wait_until(lambda c: len(c.of_type("intent")) >= len(c.of_type("final")), timeout=10)
        live_summary = await caller.api("GET", "/summary")
        await caller.hangup(end_session=True, keep_api=True)  # the DELETE returns once the summary is stored
        summary = await caller.api("GET", "/summary")
    finally:
        await caller.close_api()
    return caller, turns, live_summary, summary, speakers


@pytest.fixture(scope="module")
def finished_call(server):
    """One call for the module's tests: ~24 s of real-time audio."""
    return asyncio.run(place_call(server.base_url))


def test_each_side_is_transcribed_under_its_own_label(finished_call):
    caller, turns, _, _, speakers = finished_call
    ready = caller.of_type("ready")[0]
    assert ready["mode"] == "assist" and sorted(ready["speakers"]) == ["agent", "customer"]
    finals = caller.of_type("final")
    assert {f["speaker"] for f in finals} == {"agent", "customer"}
    assert sorted(f["seq"] for f in finals) == list(range(1, len(finals) + 1)), "one numbering for both tracks"
    for speaker in ("agent", "customer"):
        heard = " ".join(f["text"] for f in sorted(finals, key=lambda f: f["start"]) if f["speaker"] == speaker)
        rate = wer([spoken_by(turns, speaker)], [heard])
        assert rate <= WER_BOUND, (speaker, rate, heard)
        # Each side's words land at its own turns' times (one clock for both tracks).
        for final in (f for f in finals if f["speaker"] == speaker):
            assert any(t["start"] - 0.6 <= final["start"] and final["end"] <= t["end"] + 0.6
                       for t in turns["turns"] if t["speaker"] == speaker), final


def test_every_final_gets_a_call_center_intent(finished_call):
    caller, _, _, _, _ = finished_call
    intents = {(i["speaker"], i["utterance_id"]): i for i in caller.of_type("intent") if i["final"]}
    for final in caller.of_type("final"):
        intent = intents[(final["speaker"], final["utterance_id"])]
        assert intent["label_set"] == "call_center" and intent["text"] == final["text"]
        assert set(intent["scores"]) >= {"billing_inquiry", "complaint", "escalation", "greeting_other"}
        assert all(0.0 <= label["score"] <= 1.0 for label in intent["labels"])


def test_sentiment_topic_and_metrics_arrive_live(finished_call):
    caller, turns, _, _, speakers = finished_call
    sentiments = caller.of_type("sentiment")
    customer_finals = [f for f in caller.of_type("final") if f["speaker"] == "customer"]
    assert sentiments and all(s["speaker"] == "customer" for s in sentiments)
    assert len(sentiments) == len(customer_finals)
    assert all(-1.0 <= s["score"] <= 1.0 and s["label"] in ("negative", "neutral", "positive") for s in sentiments)
    assert caller.of_type("topic"), "a topic is named once there is talk"
    metrics = caller.of_type("call_metrics")[-1]
    for speaker in ("agent", "customer"):
        # The VAD's utterance bounds pad each turn by up to ~0.4 s (pre-roll, trailing frames).
        expected = talk_time(turns, speaker, speakers)
        assert metrics["talk_s"][speaker] == pytest.approx(expected, abs=0.5 * turn_count(turns, speaker)), metrics
        assert metrics["talk_rate_wps"][speaker] > 0.5
    assert metrics["silence_s"] > 0 and metrics["speech_to_silence"] > 0


def test_a_suggested_reply_follows_each_customer_final_quickly(finished_call):
    caller, _, _, _, _ = finished_call
    arrivals = {}
    for received in caller.events:
        event = received.event
        if event["type"] == "final" and event["speaker"] == "customer":
            arrivals[event["utterance_id"]] = received.wall
    first_suggestion = {}
    for received in caller.events:
        event = received.event
        if event["type"] == "suggestion" and event["utterance_id"] not in first_suggestion:
            first_suggestion[event["utterance_id"]] = (received.wall, event)
    assert set(first_suggestion) == set(arrivals), "one suggestion per customer final"
    for utterance_id, (wall, event) in first_suggestion.items():
        # Shown, or withheld because its best entry is under the confidence floor (no guess): both say so at once.
        assert (event["text"] and event["knowledge_ids"]) or (event["withheld"] and event["score"] < Settings().assist_suggestion_floor), event
        assert wall - arrivals[utterance_id] <= 1.5, (utterance_id, wall - arrivals[utterance_id])


def test_the_summary_holds_the_call(finished_call):
    caller, turns, live_summary, summary, speakers = finished_call
    assert live_summary["transcript"], "a live call has a summary so far"
    assert summary["session_id"] == caller.session_id
    assert [line["seq"] for line in summary["transcript"]] == sorted(f["seq"] for f in caller.of_type("final"))
    assert {line["speaker"] for line in summary["transcript"]} == {"agent", "customer"}
    expected = talk_time(turns, "customer", speakers)
    assert summary["metrics"]["talk_s"]["customer"] == pytest.approx(expected, abs=0.5 * turn_count(turns, "customer"))
    assert summary["sentiment"]["scores"] and summary["topic"]
    assert sum(summary["intents"]["counts"].values()) >= 1


@pytest.mark.asyncio
async def test_an_unknown_track_label_is_refused(server):
    speakers, _ = call_channels()
    caller = HeadlessCaller(server.base_url, b"", mode="assist", speakers={"caller": speakers["customer"][:32000]})
    with pytest.raises(ApiCallError) as caught:
        await caller.connect()
    assert caught.value.status == 400 and caught.value.body["error"]["code"] == "bad_track_label"
    assert "agent or customer" in caught.value.body["error"]["message"]
    await caller.hangup()


def test_a_missing_intent_encoder_stops_the_start_with_its_path(redis_url, tmp_path):
    missing = tmp_path / "roberta-base"
    result = serve_expecting_failure(redis_url, tmp_path, "--intent-encoder", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr and "does not exist" in result.stderr


def test_a_missing_heads_directory_stops_the_start_with_its_path(redis_url, tmp_path):
    missing = tmp_path / "heads"
    result = serve_expecting_failure(redis_url, tmp_path, "--intent-heads-dir", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr


def test_a_bad_knowledge_file_stops_the_start_naming_the_entry(redis_url, tmp_path):
    knowledge = tmp_path / "knowledge.json"
    knowledge.write_text(json.dumps([{"id": "refunds", "title": "Refunds", "topics": [], "examples": ["money back"]}]))
    result = serve_expecting_failure(redis_url, tmp_path, "--assist-knowledge", str(knowledge))
    assert result.returncode == 2, result.stderr
    assert "knowledge.json" in result.stderr and "answer" in result.stderr, result.stderr


# --- after the call: its facts (server/analytics_worker.py), the calls API, the export --------------
def run_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "earshot.server", *args], capture_output=True, text=True, timeout=timeout)


def worker_args(server, redis_url: str) -> tuple[str, ...]:
    """What a worker beside the module's server takes: its Redis and its data dir (its storage keys)."""
    return ("--redis-url", redis_url, "--data-dir", str(server.log_path.parent), "--analytics-metrics-port", "0")


@pytest.fixture(scope="module")
def analysed_call(finished_call, server, redis_url):
    """The call's DELETE put it on the stream; one worker run stores its facts."""
    caller, _, _, summary, _ = finished_call
    done = run_command("analytics-worker", "--until-idle", "--consumer", "test-1", *worker_args(server, redis_url))
    assert done.returncode == 0, done.stderr
    facts = httpx.get(f"{server.base_url}/api/calls/{caller.session_id}", timeout=10)
    assert facts.status_code == 200, facts.text
    return caller, summary, facts.json()


def test_an_ended_call_becomes_its_facts_once(analysed_call, server, redis_url):
    caller, summary, facts = analysed_call
    assert facts["meta"]["session_id"] == caller.session_id and facts["meta"]["mode"] == "assist"
    assert facts["handle_time_s"] == pytest.approx(summary["metrics"]["call_s"], abs=0.01)
    named = summary["topic"] if summary["topic"] and summary["topic"].get("state") == "named" else None
    assert facts["live"]["topic_label"] == (named["label"] if named else "unclear")
    assert facts["live"]["intent_counts"] == summary["intents"]["counts"]
    assert facts["scored_from"] == "live" and facts["rescored"] is None
    assert sum(facts["talk_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert 0.0 < facts["silence_share"] < 1.0
    last = {s["utterance_id"]: s for s in summary["suggestions"]}
    shown = {uid for uid, s in last.items() if not s.get("withheld")}
    assert {s["utterance_id"] for s in facts["suggestions"]} == shown
    assert len(facts["sentiment"]) == len(summary["sentiment"]["scores"])
    assert "text" not in json.dumps(facts["intents"]), "no words of the call in its facts"
    # Handled again (a worker that crashed before acknowledging): written once, counted once.
    before = calls_total(server, redis_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.xadd("earshot:analytics:calls", {"session_id": caller.session_id, "mode": "assist", "ended_at": "1"})
    done = run_command("analytics-worker", "--until-idle", "--consumer", "test-2", *worker_args(server, redis_url))
    assert done.returncode == 0 and "repeated=1" in done.stdout, done.stdout + done.stderr
    assert calls_total(server, redis_url) == before
    assert httpx.get(f"{server.base_url}/api/calls/{caller.session_id}").json() == facts


def test_the_calls_api_finds_the_call_and_refuses_bad_queries(analysed_call, server):
    caller, _, facts = analysed_call
    base = f"{server.base_url}/api/calls"
    found = httpx.get(base, params={"q": caller.session_id[:8]}).json()["calls"]
    assert [c["session_id"] for c in found] == [caller.session_id]
    assert found[0]["summary_url"] == f"/sessions/{caller.session_id}/summary"
    by_topic = httpx.get(base, params={"topic": facts["live"]["topic_label"], "limit": 1000}).json()["calls"]
    assert caller.session_id in {c["session_id"] for c in by_topic}
    assert not httpx.get(base, params={"q": "no call says this"}).json()["calls"]
    assert not httpx.get(base, params={"since": time.time() + 3600, "until": time.time() + 7200}).json()["calls"]
    for params, code in (({"since": "yesterday"}, "bad_since"), ({"limit": "0"}, "bad_limit"),
                         ({"since": "10", "until": "5"}, "bad_range")):
        answer = httpx.get(base, params=params)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    missing = httpx.get(f"{base}/0123456789abcdef")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_call"


def test_export_writes_the_call_as_csv_and_jsonl(analysed_call, server, redis_url, tmp_path):
    caller, _, facts = analysed_call
    out = tmp_path / "calls.csv"
    args = ("--redis-url", redis_url, "--data-dir", str(server.log_path.parent))
    done = run_command("export", "--since", "1h", "--format", "csv", "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    rows = {row["session_id"]: row for row in csv.DictReader(out.open())}
    row = rows[caller.session_id]
    assert row["topic_label"] == facts["live"]["topic_label"] and float(row["handle_time_s"]) == facts["handle_time_s"]
    assert set(row["intents"].split(";")) == set(facts["live"]["intent_counts"])
    done = run_command("export", "--since", "1h", "--format", "jsonl", *args)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert facts in lines
    bad = run_command("export", "--since", "last tuesday", *args)
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def calls_total(server, redis_url) -> float:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return float(r.hget("earshot:analytics:totals", "calls|assist") or 0)


def test_a_running_worker_serves_the_totals_and_stops_on_sigterm(analysed_call, server, redis_url):
    port = free_port()
    args = [a if a != "0" else str(port) for a in worker_args(server, redis_url)]
    worker = subprocess.Popen([sys.executable, "-m", "earshot.server", "analytics-worker", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "earshot_analytics_calls_total{" not in text:
            time.sleep(0.5)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                assert worker.poll() is None, worker.communicate()
        assert float(text.split('earshot_analytics_calls_total{mode="assist"} ')[1].split()[0]) == calls_total(server, redis_url)
        assert 'earshot_analytics_handle_time_seconds_count' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err

"""An agent-assist call end to end: the two channels of a real call recording as two WebRTC tracks.

`calls/call-1.wav` has the agent on channel 0 and the customer on channel 1,
with the turns in `call-1.json`. The headless caller sends each channel as
its own labelled track in real time; the server transcribes them apart and
sends intents, sentiment, topic, suggestions and call metrics, then stores a
summary when the call ends.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from earshot.loadtest.caller import ApiCallError, HeadlessCaller, speech_bounds
from earshot.loadtest.wer import wer
from earshot.server.settings import Settings
from tests.calls import utterances_settled
from tests.conftest import corpus_file, serve_expecting_failure

pytestmark = pytest.mark.slow

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

"""GET /metrics: Prometheus text the load tester and an operator scrape, fed by real calls."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.faults import SilentTrack
from earshot.models.audio import read_audio
from tests.calls import call_with
from tests.conftest import corpus_file, start_server


def scrape(base_url: str) -> dict[str, float]:
    """sample name (with labels) -> value"""
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" not in sample.labels:
                values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def test_a_call_shows_in_the_metrics(server):
    before = scrape(server.base_url)
    for name in ("earshot_live_sessions", "earshot_asr_queue_depth", "earshot_event_loop_lag_seconds_count"):
        assert name in before, sorted(before)
    async def one_call():
        caller = await call_with(server.base_url, corpus_file("utterances/LJ001-0009.wav"))
        await caller.hangup()
        return caller

    finals = len(asyncio.run(one_call()).of_type("final"))
    assert finals >= 1
    after = scrape(server.base_url)
    assert after["earshot_final_latency_seconds_count"] - before.get("earshot_final_latency_seconds_count", 0) == finals
    final_decodes = "earshot_asr_inference_seconds_count{kind=final}"
    assert after[final_decodes] - before.get(final_decodes, 0) >= finals  # speculative finals may be decoded and dropped
    partial_decodes = "earshot_asr_inference_seconds_count{kind=partial}"
    assert after[partial_decodes] - before.get(partial_decodes, 0) >= 3  # a 7 s utterance gets partials
    assert after["earshot_asr_batch_size_count"] - before.get("earshot_asr_batch_size_count", 0) >= 3
    latency_sum = after["earshot_final_latency_seconds_sum"] - before.get("earshot_final_latency_seconds_sum", 0)
    assert 0.2 * finals < latency_sum < 5.0 * finals  # every final waits at least the model's first check (200 ms of silence)
    assert after["earshot_event_loop_lag_seconds_count"] > before["earshot_event_loop_lag_seconds_count"]


def test_a_server_notice_is_counted_like_any_other_error(redis_url, tmp_path):
    """no_media is sent by the call itself, not the pipeline: it goes through the same door and is counted."""
    server = start_server(redis_url, tmp_path, extra_args=("--media-timeout-s", "2"))
    try:
        async def silent_call() -> HeadlessCaller:
            caller = HeadlessCaller(server.base_url, b"", mode="transcribe", track_class=SilentTrack)
            await caller.connect()
            await caller.wait_until(lambda c: bool(c.of_type("error")), timeout=20)
            await caller.hangup()
            return caller

        caller = asyncio.run(silent_call())
        assert [e["code"] for e in caller.of_type("error")] == ["no_media"]
        assert scrape(server.base_url)["earshot_errors_total{code=no_media}"] == 1
    finally:
        server.stop()


def moved(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def wait_for(caller: HeadlessCaller, condition, timeout: float, what: str) -> None:
    if not await caller.wait_until(condition, timeout):
        turns = [e["state"] for e in caller.of_type("turn")]
        pytest.fail(f"timed out waiting for {what}; turns={turns}; errors={caller.of_type('error')}")


@pytest.mark.slow
def test_an_interview_shows_what_the_candidate_feels(redis_url, tmp_path):
    """Reply latency, LLM first token, TTS first audio, barge-in stop and intent time move with a real interview.

    The candidate answers the question, which gets a follow-up (SmolLM2), talks over that follow-up
    (a barge-in), and the interview closes: every reply, the cut and each final's intent are counted.
    """
    server = start_server(
        redis_url, tmp_path, extra_args=("--interview-questions", "1", "--turn-pause-ms", "600", "--max-follow-ups", "1")
    )
    try:
        before = scrape(server.base_url)

        async def interview() -> HeadlessCaller:
            caller = HeadlessCaller(server.base_url, b"", role="software_engineer", difficulty="easy")
            await caller.connect()
            try:
                await wait_for(caller, lambda c: [e for e in c.of_type("turn") if e["state"] == "listening"], 90, "question 1")
                caller.say(read_audio(corpus_file("utterances/LJ001-0009.wav")))  # 19 words: followed up
                await wait_for(caller, lambda c: any(q["follow_up"] for q in c.of_type("question")), 60, "the follow-up")
                follow_up = caller.of_type("question")[-1]
                starts = len(caller.of_type("agent_audio_start"))
                await wait_for(caller, lambda c: len(c.of_type("agent_audio_start")) > starts, 30, "the follow-up's audio")
                cut_id = caller.of_type("agent_audio_start")[-1]["utterance_id"]
                await asyncio.sleep(1.0)  # into "Thank you. <the follow-up>"
                caller.say(read_audio(corpus_file("utterances/LJ001-0011.wav")))
                await wait_for(caller, lambda c: [e for e in c.of_type("agent_audio_end") if e["utterance_id"] == cut_id], 30,
                               "the cut")
                await wait_for(caller, lambda c: c.of_type("report_ready"), 90, "the closing")
                assert follow_up["text"]
            finally:
                await caller.hangup()
            return caller

        caller = asyncio.run(interview())
        after = scrape(server.base_url)
    finally:
        server.stop()

    for name in ("reply_latency", "barge_in_stop", "llm_first_token"):
        count, total = (moved(before, after, f"earshot_{name}_seconds_{part}") for part in ("count", "sum"))
        print(f"{name}: {count:.0f} observed, mean {total / max(count, 1) * 1000:.0f} ms")
    cut = [e for e in caller.of_type("agent_audio_end") if e["interrupted"]]
    assert len(cut) == 1, caller.of_type("agent_audio_end")
    # The barge-in: the candidate's voice start -> the interviewer's first silent frame, once.
    assert moved(before, after, "earshot_barge_in_stop_seconds_count") == 1
    assert 0.05 <= moved(before, after, "earshot_barge_in_stop_seconds_sum") <= 0.5  # the VAD alone needs 60 ms of voice
    # Replies: the answer -> the follow-up, the barge-in answer -> the closing.
    replies = moved(before, after, "earshot_reply_latency_seconds_count")
    assert replies >= 2
    assert 0.2 * replies < moved(before, after, "earshot_reply_latency_seconds_sum") < 5.0 * replies
    assert moved(before, after, "earshot_llm_first_token_seconds_count") >= 1  # the follow-up
    first_audio = sum(moved(before, after, f"earshot_tts_first_audio_seconds_count{{cached={c}}}") for c in ("true", "false"))
    assert first_audio >= 4  # greeting, question, follow-up, closing: one each
    assert moved(before, after, "earshot_tts_first_audio_seconds_count{cached=true}") >= 1  # "Hello, and welcome." is warmed
    finals = len(caller.of_type("final"))
    assert finals >= 2 and moved(before, after, "earshot_intent_inference_seconds_count{kind=final}") == finals

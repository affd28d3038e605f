"""GET /metrics: Prometheus text the load tester and an operator scrape, fed by real calls."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.faults import SilentTrack
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

"""The analytics consumer group on a real Redis: crashes, retries, dead letters, facts written once.

Sessions and summaries are stored through the real SessionStore (sealed); the summary is a
small hand-made one of the shape agents/assist_agent.py stores (a real call's is checked in
tests/test_assist_call.py). A "crash" is a worker that took a message and never acknowledged
it: exactly what Redis sees when a worker process dies mid-message.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio as aioredis

from earshot.agents.call_facts import CallMeta, FactsError, facts_from_finals, facts_from_summary
from earshot.server.analytics_metrics import AnalyticsCollector, increments
from earshot.server.analytics_stream import DEAD_STREAM, GROUP, STREAM, CallEnded, RedisCallStream, publish
from earshot.server.analytics_worker import AnalyticsWorker
from earshot.server.at_rest import Sealer
from earshot.server.facts_store import FactsStore
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.storage_keys import StorageKey
from earshot.server.store import SessionStore, connect

CLAIM_IDLE_S = 0.2


def summary(escalate: bool = False) -> dict:
    """An assist call's summary: four finals, one suggestion the agent then used."""
    line = lambda seq, speaker, uid, text, start, intents: {  # noqa: E731
        "seq": seq, "speaker": speaker, "utterance_id": uid, "text": text, "start": start, "end": start + 2.0,
        "intents": [{"name": name, "score": 0.9} for name in intents],
    }
    return {
        "session_id": "x",
        "transcript": [
            line(1, "agent", 1, "thanks for calling how can i help", 0.0, ["greeting_other"]),
            line(2, "customer", 1, "i was charged twice this month", 3.0, ["billing_inquiry", "complaint"]),
            line(3, "agent", 2, "i can refund the duplicate payment today", 6.0, ["billing_inquiry"]),
            line(4, "customer", 2, "get me your manager" if escalate else "great thank you", 9.0,
                 ["escalation"] if escalate else ["feedback_praise"]),
        ],
        "intents": {},
        "topic": {"topic": "billing_payments", "label": "Billing & payments", "score": 0.41, "source": "embedding", "candidates": []},
        "topic_history": [{"topic": "billing_payments", "label": "Billing & payments", "score": 0.41, "at_s": 5.0}],
        "sentiment": {"scores": [{"seq": 2, "utterance_id": 1, "score": -0.4, "label": "negative"},
                                 {"seq": 4, "utterance_id": 2, "score": 0.6, "label": "positive"}],
                      "mean": 0.1, "trend": 0.5, "trend_label": "improving"},
        "metrics": {"call_s": 12.0, "talk_s": {"agent": 4.0, "customer": 4.0}, "talk_share": {"agent": 0.5, "customer": 0.5},
                    "speech_s": 8.0, "silence_s": 4.0, "overlap_s": 0.0, "interruptions": {"agent": 0, "customer": 1}},
        "suggestions": [{"utterance_id": 1, "text": "I can refund the duplicate payment today.", "source": "knowledge",
                         "knowledge_ids": ["duplicate-charge"], "score": 0.62, "final": True, "latency_s": 0.02}],
    }


def word_overlap(a: str, b: str) -> float:
    """A similarity for tests that need none of the encoder: the share of a's words in b."""
    words = set(a.lower().strip(".").split())
    return len(words & set(b.lower().split())) / len(words)


class Harness:
    def __init__(self, url: str) -> None:
        self.client = connect(url)
        self.sealer = sealer = Sealer([StorageKey.new()])
        settings = Settings()
        self.sessions = SessionStore(self.client, Retention.from_settings(settings), sealer)
        self.facts = FactsStore(self.client, sealer, settings.retention_reports_s)

    async def ended_call(self, document: dict) -> str:
        record, _ = await self.sessions.create("assist", "", "", owner="dana", team="billing")
        await self.sessions.save_summary(record.session_id, document)
        await publish(self.client, CallEnded(record.session_id, "assist", time.time()))
        return record.session_id

    def worker(self, name: str, similarity=word_overlap, max_tries: int = 3) -> tuple[AnalyticsWorker, RedisCallStream]:
        stream = RedisCallStream(self.client, name, CLAIM_IDLE_S)
        return AnalyticsWorker(stream, self.sessions, self.facts, similarity, 0.6, max_tries), stream

    async def run(self, worker: AnalyticsWorker) -> None:
        await worker.run(asyncio.Event(), block_ms=50, until_idle=True)

    async def dead(self) -> list[dict]:
        return [fields for _id, fields in await self.client.xrange(DEAD_STREAM)]


@pytest.fixture
async def harness(own_redis):
    h = Harness(own_redis.url)
    await RedisCallStream(h.client, "setup", CLAIM_IDLE_S).join()
    yield h
    await h.client.aclose()


async def test_a_crashed_workers_message_is_taken_by_another_and_its_facts_written_once(harness):
    session_id = await harness.ended_call(summary())
    crashed, crashed_stream = harness.worker("crashed")
    taken = await crashed_stream.fetch(10, 50)  # took it, then died before acknowledging
    assert [d.fields["session_id"] for d in taken] == [session_id] and taken[0].tries == 1
    survivor, _ = harness.worker("survivor")
    await harness.run(survivor)
    assert survivor.counts.stored == 0, "not before the idle time: the first worker may still be on it"
    await asyncio.sleep(CLAIM_IDLE_S + 0.1)
    await harness.run(survivor)
    assert survivor.counts.stored == 1
    facts = await harness.facts.get(session_id)
    assert facts["meta"]["agent"] == "dana" and facts["live"]["topic_label"] == "Billing & payments"
    # The crashed worker comes back and finishes what it held: nothing is written or counted twice.
    await crashed.handle(taken[0])
    assert crashed.counts.repeated == 1
    totals = await harness.facts.totals()
    assert totals["calls|assist"] == 1 and totals["intent|billing_inquiry"] == 2
    assert await harness.facts.get(session_id) == facts
    assert await harness.client.xlen(STREAM) == 0 and (await harness.client.xpending(STREAM, GROUP))["pending"] == 0


async def test_a_malformed_message_is_dead_lettered_with_its_reason_and_the_group_goes_on(harness):
    await harness.client.xadd(STREAM, {"session_id": "../../etc", "mode": "assist", "ended_at": "1"})
    await harness.client.xadd(STREAM, {"session_id": "0123456789abcdef", "mode": "fax", "ended_at": "1"})
    bad_summary = await harness.ended_call({"transcript": "not a list of lines"})
    good = await harness.ended_call(summary())
    worker, _ = harness.worker("w")
    await harness.run(worker)
    dead = await harness.dead()
    assert worker.counts.dead == 3 and worker.counts.stored == 1
    reasons = [entry["reason"] for entry in dead]
    assert "is not a session id" in reasons[0] and "mode 'fax'" in reasons[1]
    assert reasons[2].startswith("FactsError") and dead[2]["message.session_id"] == bad_summary
    assert await harness.facts.get(good) is not None and await harness.facts.get(bad_summary) is None


async def test_a_failing_message_is_retried_then_dead_lettered_after_max_tries(harness):
    session_id = await harness.ended_call(summary())

    def broken(a: str, b: str) -> float:
        raise RuntimeError("the encoder fell over")

    worker, _ = harness.worker("w", similarity=broken, max_tries=3)
    for _ in range(3):
        await harness.run(worker)
        await asyncio.sleep(CLAIM_IDLE_S + 0.05)
    assert worker.counts.failed == 2 and worker.counts.dead == 1
    dead = await harness.dead()
    assert "failed 3 times" in dead[0]["reason"] and "the encoder fell over" in dead[0]["reason"]
    assert await harness.facts.get(session_id) is None and await harness.facts.totals() == {}


async def test_a_call_erased_before_its_facts_is_acknowledged_with_nothing_stored(harness):
    session_id = await harness.ended_call(summary())
    record = await harness.sessions.get(session_id)
    await harness.sessions.purge(record)
    worker, _ = harness.worker("w")
    await harness.run(worker)
    assert worker.counts.skipped == 1 and not await harness.dead() and await harness.client.xlen(STREAM) == 0
    assert await harness.facts.get(session_id) is None


async def test_facts_leave_with_the_session_they_belong_to(harness):
    session_id = await harness.ended_call(summary())
    worker, _ = harness.worker("w")
    await harness.run(worker)
    assert [f["meta"]["session_id"] for f in await harness.facts.ended_between(0, time.time(), 10)] == [session_id]
    await harness.sessions.purge(await harness.sessions.get(session_id))
    assert await harness.facts.get(session_id) is None
    assert await harness.facts.ended_between(0, time.time(), 10) == []
    assert await harness.client.zcard("earshot:analytics:ended") == 0, "the index forgets it"


def test_escalations_suggestions_and_talk_are_counted_from_a_summary():
    meta = CallMeta("0123456789abcdef", "assist", "dana", "billing", 100.0, 112.0)
    facts = facts_from_summary(meta, summary(escalate=True), word_overlap, used_at=0.6)
    assert facts.escalated and facts.escalation_reason == "Billing & payments"
    [suggestion] = facts.suggestions
    assert suggestion.used and suggestion.knowledge_id == "duplicate-charge" and suggestion.used_similarity == 1.0
    assert facts.silence_share == pytest.approx(4 / 12, abs=0.001)
    assert [point["score"] for point in facts.sentiment] == [-0.4, 0.6] and facts.sentiment[0]["at_s"] == 5.0
    unclear = {**summary(), "topic": {"topic": "", "label": "Topic unclear", "score": 0.2, "state": "unclear"}}
    assert facts_from_summary(meta, unclear, word_overlap, used_at=0.6).live.topic_label == "unclear"
    withheld = summary()
    withheld["suggestions"] = [{**withheld["suggestions"][0], "text": "", "knowledge_ids": [], "withheld": True}]
    assert facts_from_summary(meta, withheld, word_overlap, used_at=0.6).suggestions == []
    unused = facts_from_summary(meta, summary(), lambda a, b: 0.1, used_at=0.6)
    assert not unused.escalated and unused.escalation_reason == "" and not unused.suggestions[0].used
    add = increments(facts.to_dict())
    assert add["escalation|Billing & payments"] == 1 and add["handle_bucket|30"] == 1 and add["suggestions|used"] == 1
    with pytest.raises(FactsError):
        facts_from_summary(meta, {"transcript": []}, word_overlap, used_at=0.6)


def test_an_interviews_facts_come_from_its_finals():
    meta = CallMeta("0123456789abcdef", "interview", "", "", 100.0, 160.0)
    facts = facts_from_finals(meta, [{"start": 1.0, "end": 11.0}, {"start": 20.0, "end": 30.0}], audio_s=60.0)
    assert facts.handle_time_s == 60.0 and facts.utterances == 2 and facts.silence_share == pytest.approx(2 / 3, abs=0.001)


def test_the_metrics_show_the_totals_as_prometheus_counters_and_histograms():
    collector = AnalyticsCollector()
    facts = facts_from_summary(CallMeta("0123456789abcdef", "assist", "", "", 0.0, 12.0), summary(True), word_overlap, 0.6)
    collector.update(increments(facts.to_dict()))
    text = collector.render().decode()
    assert 'earshot_analytics_calls_total{mode="assist"} 1.0' in text
    assert 'earshot_analytics_escalations_total{reason="Billing & payments"} 1.0' in text
    assert 'earshot_analytics_handle_time_seconds_bucket{le="30.0"} 1.0' in text
    assert 'earshot_analytics_handle_time_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'earshot_analytics_suggestions_total{outcome="shown"} 1.0' in text


async def test_an_ended_interview_gets_its_facts_from_its_stored_finals(harness):
    record, _ = await harness.sessions.create("interview", "data_scientist", "easy", owner="sam")
    for seq, (start, end) in enumerate([(1.0, 9.0), (12.0, 20.0)], start=1):
        final = {"type": "final", "seq": seq, "text": "an answer", "start": start, "end": end}
        assert await harness.sessions.append_final(record.session_id, seq, final, {"audio_s": 24.0})
    await publish(harness.client, CallEnded(record.session_id, "interview", time.time()))
    worker, _ = harness.worker("w")
    await harness.run(worker)
    facts = await harness.facts.get(record.session_id)
    assert facts["meta"]["agent"] == "sam" and facts["handle_time_s"] == 24.0 and facts["utterances"] == 2
    assert (await harness.facts.totals())["calls|interview"] == 1


def test_who_sees_which_calls_facts():
    from earshot.server.auth import Identity
    from earshot.server.calls_api import _visible

    facts = {"meta": {"session_id": "0123456789abcdef", "mode": "assist", "agent": "dana", "team": "red", "started_at": 0.0}}
    seen_by = lambda name, role, team: _visible(Identity(name, role, team), facts)  # noqa: E731
    assert seen_by("dana", "agent", "red") and not seen_by("eve", "agent", "red")
    assert seen_by("lead", "supervisor", "red") and not seen_by("lead", "supervisor", "blue")
    assert seen_by("root", "admin", "") and not seen_by("dana", "candidate", "red")
    assert _visible(None, facts), "auth none: anyone on the server"


async def test_a_listing_reads_the_index_a_page_at_a_time_and_skips_what_is_gone(harness):
    """More calls than a page: newest first across pages, expired facts pruned without skipping the next ones."""
    from earshot.server.facts_store import ENDED_INDEX, PAGE

    ids = [f"{n:016x}" for n in range(PAGE + 50)]
    for n, session_id in enumerate(ids):  # the index and sealed facts, as the worker's script leaves them
        facts = {"meta": {"session_id": session_id, "ended_at": 1000.0 + n}}
        await harness.client.set(f"earshot:session:{session_id}:facts", harness.sealer.seal(session_id, json.dumps(facts)))
        await harness.client.zadd(ENDED_INDEX, {session_id: 1000.0 + n})
    gone = ids[PAGE + 40 : PAGE + 45] + ids[10:15]  # expired: some in the first page, some in the second
    await harness.client.delete(*[f"earshot:session:{i}:facts" for i in gone])
    listed = [f["meta"]["session_id"] async for f in harness.facts.newest_first(0, 5000, 10_000)]
    assert listed == [i for i in reversed(ids) if i not in gone]
    assert await harness.client.zcard(ENDED_INDEX) == len(ids) - len(gone), "the index forgot the gone ones"
    first_three = await harness.facts.ended_between(0, 5000, 3)
    assert [f["meta"]["session_id"] for f in first_three] == list(reversed(ids))[:3]


async def test_facts_under_another_deployments_key_are_left_out_of_a_listing(harness):
    session_id = await harness.ended_call(summary())
    worker, _ = harness.worker("w")
    await harness.run(worker)
    other = FactsStore(harness.client, Sealer([StorageKey.new()]), Settings().retention_reports_s)
    assert await other.ended_between(0, time.time(), 10) == []
    assert [f["meta"]["session_id"] for f in await harness.facts.ended_between(0, time.time(), 10)] == [session_id]

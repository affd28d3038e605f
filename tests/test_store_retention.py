"""The store's key layout, expiries and deletion, against a real Redis: nothing is ever extended, a purged session stays gone."""

from __future__ import annotations

import json

import pytest
import redis
import redis.asyncio as aioredis

from earshot.models.intent_feedback import Correction
from earshot.server.at_rest import Sealer
from earshot.server.facts_store import FactsStore
from earshot.server.feedback_store import FeedbackStore
from earshot.server.redis_server import PrivateRedis
from earshot.server.retention import Retention
from earshot.server.storage_keys import StorageKey
from earshot.server.store import SessionStore, StoreFull, connect
from earshot.server.write_behind import WriteBehind
from earshot.server.store_keys import SESSION_KEYS, owner_key, session_key

RETENTION = Retention(live_s=3600, transcripts_s=7 * 86400, reports_s=30 * 86400, pending_s=600)
FINAL = {"type": "final", "text": "hello there", "seq": 1}
SEALER = Sealer([StorageKey.new()])


def a_correction(session_id: str) -> Correction:  # an agent's intent correction (server/feedback_store.py)
    return Correction("call_center", "hello there", ("greeting_other",), (), (), session_id, 1, "", 1.0)


@pytest.fixture
async def store(redis_url):
    store = SessionStore(connect(redis_url), RETENTION, SEALER)
    yield store
    await store.close()


@pytest.fixture
async def raw(redis_url):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def keys_of(raw: aioredis.Redis, session_id: str) -> list[str]:
    """Every key Redis holds for the session, found by SCAN (not by the list the store knows)."""
    return sorted([key async for key in raw.scan_iter(match=f"earshot:session:{session_id}*", count=1000)])


async def expires_at_ms(raw: aioredis.Redis, key: str) -> int:
    return int(await raw.execute_command("PEXPIRETIME", key))


async def test_a_session_s_keys_and_their_absolute_expiries(store, raw):
    record, _ = await store.create("interview", "data_scientist", "easy", owner="ada", team="red")
    sid, created_ms = record.session_id, round(record.created_at * 1000)
    assert await keys_of(raw, sid) == [session_key(sid)]
    # Until the call's first write: the short, pending life.
    assert await expires_at_ms(raw, session_key(sid)) == created_ms + RETENTION.pending_s * 1000
    assert await raw.smembers(owner_key("ada")) == {sid}

    assert await store.update(sid, state="live", audio_s=1.5, next_utterance_id=2, pace={"wps": 2.0})
    assert await store.append_final(sid, 1, FINAL, {"audio_s": 2.0})
    await store.save_report(sid, {"overall": 1})
    await store.save_summary(sid, {"turns": 0})
    facts = FactsStore(store.client, SEALER, RETENTION.reports_s)
    assert await facts.write_once({"meta": {"session_id": sid, "ended_at": 1.0}}, {"calls|interview": 1}) == 1
    await store.save_rescored(sid, {"transcript": []})
    assert await FeedbackStore(store.client, RETENTION, SEALER).write(a_correction(sid), "customer", expected="")
    assert await keys_of(raw, sid) == sorted(session_key(sid, suffix) for suffix in SESSION_KEYS)
    # The record holds who and what; the live hash where a call resumes.
    assert set(await raw.hkeys(session_key(sid))) == {
        "mode", "role", "difficulty", "state", "created_at", "token_sha256", "owner", "team", "placed_on"}
    assert set(await raw.hkeys(session_key(sid, ":live"))) == {"audio_s", "next_utterance_id", "pace"}
    expected = {"": RETENTION.record_s, ":live": RETENTION.live_s, ":finals": RETENTION.transcripts_s,
                ":report": RETENTION.reports_s, ":summary": RETENTION.reports_s, ":facts": RETENTION.reports_s,
                ":rescored": RETENTION.reports_s, ":corrections": RETENTION.transcripts_s}
    for suffix, seconds in expected.items():
        assert await expires_at_ms(raw, session_key(sid, suffix)) == created_ms + seconds * 1000, suffix
    assert await expires_at_ms(raw, owner_key("ada")) >= created_ms + RETENTION.record_s * 1000

    # Read back as one record, from both hashes.
    got = await store.get(sid)
    assert (got.state, got.audio_s, got.next_utterance_id, got.pace, got.owner) == ("live", 2.0, 2, {"wps": 2.0}, "ada")


async def test_no_write_and_no_end_ever_extends_an_expiry(store, raw):
    record, _ = await store.create("transcribe", "data_scientist", "easy")
    sid = record.session_id
    # A DELETE of a session that never connected: ended, and still the pending life, not a longer one.
    pending = await expires_at_ms(raw, session_key(sid))
    assert await store.end(sid)
    assert await expires_at_ms(raw, session_key(sid)) == pending
    assert (await store.get(sid)).state == "ended"

    other, _ = await store.create("transcribe", "data_scientist", "easy")
    sid = other.session_id
    await store.update(sid, state="live", audio_s=1.0)
    await store.append_final(sid, 1, FINAL, {"audio_s": 1.0})
    before = {key: await expires_at_ms(raw, key) for key in await keys_of(raw, sid)}
    # Later writes, a rewrite of the same final, the end of the call and a DELETE's end: nothing moves.
    await store.update(sid, audio_s=5.0, interview=json.dumps({"phase": "asking"}))
    await store.append_final(sid, 1, FINAL, {"audio_s": 5.0})
    await store.append_final(sid, 2, {**FINAL, "seq": 2}, {"audio_s": 6.0})
    await store.update(sid, state="created")
    await store.end(sid)
    after = {key: await expires_at_ms(raw, key) for key in await keys_of(raw, sid)}
    assert after == before
    assert await store.final_count(sid) == 2  # the repeated final was stored once


async def test_past_its_retention_the_live_state_is_not_written_back(store, raw):
    record, _ = await store.create("interview", "data_scientist", "easy")
    sid = record.session_id
    # A session created two hours ago: its live state (one hour) is past, its transcript is not.
    await raw.hset(session_key(sid), "created_at", f"{record.created_at - 7200:.3f}")
    assert await store.append_final(sid, 1, FINAL, {"audio_s": 1.0, "next_utterance_id": 2})
    assert await raw.exists(session_key(sid, ":live")) == 0
    assert await store.final_count(sid) == 1
    got = await store.get(sid)
    assert (got.audio_s, got.next_utterance_id) == (0.0, 1)


async def test_purge_deletes_every_key_at_once_and_writes_after_it_bring_nothing_back(store, raw):
    record, _ = await store.create("assist", "", "medium", owner="agent-7", team="red")
    sid = record.session_id
    await store.update(sid, state="live", audio_s=3.0)
    await store.append_final(sid, 1, FINAL, {"audio_s": 3.0})
    await store.save_summary(sid, {"turns": 1})
    assert len(await keys_of(raw, sid)) == 4
    assert await store.purge(record) == 4
    assert await keys_of(raw, sid) == [] and await raw.exists(owner_key("agent-7")) == 0
    # A call still writing (its queue, its outbox, a summary being stored) finds no session.
    assert not await store.update(sid, state="ended", audio_s=4.0)
    assert not await store.append_final(sid, 2, {**FINAL, "seq": 2}, {"audio_s": 4.0})
    await store.save_summary(sid, {"turns": 2})
    assert not await store.end(sid)
    assert await keys_of(raw, sid) == [] and await store.get(sid) is None


async def test_a_write_behind_queue_of_a_purged_session_drains_without_writing(store, raw):
    record, _ = await store.create("transcribe", "data_scientist", "easy")
    sid = record.session_id

    async def on_outage(down: bool) -> None:
        pass

    writer = WriteBehind(store, sid, on_outage)
    await store.purge(record)
    writer.start()
    writer.final(1, FINAL, {"audio_s": 1.0})
    writer.fields(state="live", audio_s=1.0)
    await writer.final_write_through(2, {**FINAL, "seq": 2}, {"audio_s": 2.0})
    assert await writer.flush(2.0)  # done with, not held back as if Redis were away
    await writer.stop()
    assert await keys_of(raw, sid) == []


async def test_erasure_takes_every_session_of_one_identity_and_no_other(store, raw):
    mine = [(await store.create("interview", "data_scientist", "easy", owner="eve", team="red"))[0] for _ in range(3)]
    theirs, _ = await store.create("interview", "data_scientist", "easy", owner="mallory", team="red")
    for record in [*mine, theirs]:
        await store.append_final(record.session_id, 1, FINAL, {"audio_s": 1.0})
    await store.save_report(mine[0].session_id, {"overall": 50})
    before = sum([len(await keys_of(raw, r.session_id)) for r in mine])
    assert before == 3 * 3 + 1  # a record, a live hash and finals each; one report

    per_session, deleted = await store.erase("eve")
    assert per_session == {mine[0].session_id: 4, mine[1].session_id: 3, mine[2].session_id: 3}
    assert deleted == before + 1  # and the index
    assert [await keys_of(raw, r.session_id) for r in mine] == [[], [], []]
    assert await raw.exists(owner_key("eve")) == 0
    assert len(await keys_of(raw, theirs.session_id)) == 3 and await store.sessions_of("mallory") == [theirs.session_id]
    assert await store.erase("nobody") == ({}, 0)


async def test_an_owner_index_never_expires_before_a_session_it_lists(redis_url, raw):
    long_store = SessionStore(connect(redis_url), RETENTION, SEALER)
    short_store = SessionStore(connect(redis_url), Retention(live_s=60, transcripts_s=60, reports_s=60, pending_s=60), SEALER)
    try:
        first, _ = await long_store.create("interview", "data_scientist", "easy", owner="ivy")
        kept_until = await expires_at_ms(raw, owner_key("ivy"))
        await short_store.create("interview", "data_scientist", "easy", owner="ivy")  # retention shortened since
        assert await expires_at_ms(raw, owner_key("ivy")) == kept_until
        assert len(await long_store.sessions_of("ivy")) == 2
    finally:
        await long_store.close()
        await short_store.close()


async def test_a_full_redis_still_purges_and_erases(tmp_path):
    """At maxmemory (noeviction) Redis refuses writes, and every command of a MULTI: deleting must still work."""
    private = PrivateRedis(tmp_path, maxmemory="4mb")
    url = private.start()
    store = SessionStore(connect(url), RETENTION, SEALER)
    try:
        purged, _ = await store.create("interview", "data_scientist", "easy", owner="zed")
        erased, _ = await store.create("interview", "data_scientist", "easy", owner="zed")
        filler = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for n in range(200):
                filler.set(f"filler:{n}", b"x" * 100_000)
        filler.config_set("maxmemory", str(1024 * 1024))  # pinned full: freed buffers must not let a write in
        with pytest.raises(StoreFull):
            await store.update(purged.session_id, state="live")
        assert await store.purge(purged) == 1
        assert await store.erase("zed") == ({erased.session_id: 1}, 2)
        filler.close()
    finally:
        await store.close()
        private.stop()

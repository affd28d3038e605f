"""Calls closed with no DELETE (server/abandoned_calls.py) on a real Redis: ended and published once, or not at all.

The closed set's entries are what a server's `call_closed` writes (`note_unended`; that the real close
path writes one is checked in tests/test_api_errors.py); the sessions are real SessionStore sessions
with a sealed summary, as in tests/test_analytics_worker.py, whose harness runs the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from earshot.loadtest.caller import HeadlessCaller
from earshot.server.abandoned_calls import UNENDED, AbandonedCalls, SweepCounts, note_unended
from earshot.server.analytics_stream import STREAM, CallEnded, RedisCallStream
from earshot.server.at_rest import Sealer
from earshot.server.cluster import CALL_PREFIX
from earshot.server.facts_store import FactsStore
from earshot.server.settings import Settings, SettingsError
from earshot.server.retention import Retention
from earshot.server.modes.assist import SUMMARY_CHECKPOINT_S
from earshot.server.store import SessionStore, connect
from tests.conftest import start_server
from tests.test_analytics_worker import CLAIM_IDLE_S, Harness, summary
from tests.test_assist_call import call_channels

AFTER_S = 600.0


@pytest.fixture
async def harness(own_redis):
    h = Harness(own_redis.url)
    h.url = own_redis.url
    await RedisCallStream(h.client, "setup", CLAIM_IDLE_S).join()
    yield h
    await h.client.aclose()


async def closed_call(h: Harness, closed_at: float, mode: str = "assist") -> str:
    """A session whose call closed at `closed_at` with no DELETE: its summary stored, its state "created"."""
    record, _ = await h.sessions.create(mode, "", "", owner="dana", team="billing")
    await h.sessions.update(record.session_id, state="created", audio_s=12.0)  # what the call's teardown leaves
    await h.sessions.save_summary(record.session_id, summary())
    await note_unended(h.client, record.session_id, at=closed_at)
    return record.session_id


async def published(h: Harness) -> list[CallEnded]:
    return [CallEnded.from_fields(fields) for _id, fields in await h.client.xrange(STREAM)]


async def state_of(h: Harness, session_id: str) -> str:
    record = await h.sessions.get(session_id)
    return record.state if record is not None else "gone"


async def test_closed_calls_past_the_setting_are_ended_and_published_once_with_two_workers_sweeping(harness):
    now = time.time()
    due = [await closed_call(harness, now - AFTER_S - 60 - i) for i in range(12)]
    fresh = await closed_call(harness, now - 30)
    clients = [connect(harness.url), connect(harness.url)]
    try:
        sweepers = [AbandonedCalls(client, AFTER_S) for client in clients]
        first, second = await asyncio.gather(*(s.sweep(now) for s in sweepers))
    finally:
        for client in clients:
            await client.aclose()
    # Both saw the same due entries; each was published by exactly one of them.
    assert first.published + second.published == len(due)
    assert first.not_due + second.not_due <= len(due) and first.gone == second.gone == 0
    messages = await published(harness)
    assert sorted(m.session_id for m in messages) == sorted(due)
    by_id = {m.session_id: m for m in messages}
    closed_at = {sid: now - AFTER_S - 60 - i for i, sid in enumerate(due)}
    assert all(m.mode == "assist" and m.ended_at == pytest.approx(closed_at[m.session_id], abs=0.01) for m in messages)
    assert [await state_of(harness, sid) for sid in due] == ["ended"] * len(due)  # no longer resumable
    # A fresh one waits: still resumable, still in the set.
    assert await state_of(harness, fresh) == "created"
    assert await harness.client.zrange(UNENDED, 0, -1) == [fresh]
    # Sweeping again publishes nothing more; the consumers store each call's facts once.
    assert await AbandonedCalls(harness.client, AFTER_S).sweep(now) == SweepCounts()
    worker, _ = harness.worker("w")
    await harness.run(worker)
    assert worker.counts.stored == len(due) and worker.counts.dead == 0
    assert (await harness.facts.totals())["calls|assist"] == len(due)
    # Its time comes: the fresh one is ended and published too.
    later = await AbandonedCalls(harness.client, AFTER_S).sweep(now + AFTER_S)
    assert later.published == 1 and await state_of(harness, fresh) == "ended"
    assert await harness.client.zcard(UNENDED) == 0


async def test_a_call_ends_when_its_audio_was_last_heard_when_that_is_after_its_entry(harness):
    """A killed instance's call: its entry is as old as its offer (or a sweep that found it live), but its live
    state says when audio last came (`heard_at`, server/webrtc.py): that is when it ended."""
    now = time.time()
    killed = await closed_call(harness, now - AFTER_S - 300)  # noted at its offer, 5 min before it died
    await harness.sessions.update(killed, heard_at=now - AFTER_S - 20)
    closed = await closed_call(harness, now - AFTER_S - 10)  # closed (noted then) after its audio stopped
    await harness.sessions.update(closed, heard_at=now - AFTER_S - 12)
    assert (await AbandonedCalls(harness.client, AFTER_S).sweep(now)).published == 2
    ended_at = {m.session_id: m.ended_at for m in await published(harness)}
    assert ended_at == {killed: pytest.approx(now - AFTER_S - 20, abs=0.01), closed: pytest.approx(now - AFTER_S - 10, abs=0.01)}


async def test_a_resumed_call_is_not_published_while_live_and_once_after_it_closes_again(harness):
    now = time.time()
    resumed = await closed_call(harness, now - AFTER_S - 5)
    # Its session's next call went live (on some instance: its hold), and the entry stayed (a lost race).
    await harness.client.set(CALL_PREFIX + resumed, "instance-b", px=5000)
    sweeper = AbandonedCalls(harness.client, AFTER_S)
    assert (await sweeper.sweep(now)).live == 1
    assert await published(harness) == [] and await state_of(harness, resumed) == "created"
    assert await harness.client.zscore(UNENDED, resumed) == pytest.approx(now, abs=0.01)  # looked at again later
    # The resumed call closes, again with no DELETE: it is due a full wait after that close.
    await harness.client.delete(CALL_PREFIX + resumed)
    await note_unended(harness.client, resumed, at=now + 100)
    assert (await sweeper.sweep(now + AFTER_S)).not_due == 0 and await published(harness) == []
    counts = await sweeper.sweep(now + 100 + AFTER_S)
    assert counts.published == 1
    (message,) = await published(harness)
    assert message.session_id == resumed and message.ended_at == pytest.approx(now + 100, abs=0.01)


async def test_an_offer_that_races_the_sweep_is_refused_not_answered_on_the_ended_session(harness, monkeypatch):
    """The sweep ends a due session only while no call of it is held; an offer reads the session again once it
    holds the call (server/api.py `_offer_here`). Here the sweep runs between the offer's first read and its
    claim: the offer is refused with 409 session_ended and lets the hold go, and no call goes live on the
    ended (already published) session. The cluster, the limits and the call set are stand-ins; the session
    store, Redis and the sweep's script are real."""
    from earshot.server import api
    from earshot.server.errors import ApiError
    from earshot.server.modes import MODE_KINDS

    session_id = await closed_call(harness, time.time() - AFTER_S - 5)
    record = await harness.sessions.get(session_id)
    assert record.state == "created"  # what the offer read first

    class Cluster:
        released = False

        async def claim(self, _session_id: str) -> bool:
            assert (await AbandonedCalls(harness.client, AFTER_S).sweep(time.time())).published == 1
            await harness.client.set(CALL_PREFIX + session_id, "here", px=5000)
            return True

        async def release(self, _session_id: str) -> None:
            self.released = True

        def beat_soon(self) -> None:
            pass

    class Calls:
        busy = 0
        offer_in_progress = is_live = is_ending = staticmethod(lambda _session_id: False)

        @contextlib.contextmanager
        def offering(self, _session_id: str):
            yield

    answered = []

    async def answer(*args, **kwargs):
        answered.append(args)
        raise AssertionError("a call went live on an ended session")

    monkeypatch.setattr(api, "_answer", answer)
    cluster = Cluster()
    state = SimpleNamespace(calls=Calls(), store=harness.sessions, cluster=cluster, settings=Settings(),
                            limits=SimpleNamespace(admit_call=lambda _busy: None))
    with pytest.raises(ApiError) as refused:
        await api._offer_here(state, record, MODE_KINDS["assist"], "v=0", {})
    assert (refused.value.status, refused.value.code) == (409, "session_ended")
    assert answered == [] and cluster.released
    assert [m.session_id for m in await published(harness)] == [session_id]  # published once, by the sweep


async def test_a_call_deleted_meanwhile_is_not_published_again(harness):
    now = time.time()
    deleted = await closed_call(harness, now - AFTER_S - 5)
    await harness.sessions.end(deleted)  # its DELETE (which published it) ended it; its entry was left behind
    counts = await AbandonedCalls(harness.client, AFTER_S).sweep(now)
    assert counts == SweepCounts(ended=1)
    assert await published(harness) == [] and await harness.client.zcard(UNENDED) == 0


async def test_a_call_purged_or_expired_meanwhile_is_dropped_and_nothing_published(harness):
    now = time.time()
    purged = await closed_call(harness, now - AFTER_S - 5)
    await harness.sessions.purge(await harness.sessions.get(purged))
    expired = await closed_call(harness, now - AFTER_S - 6, mode="interview")
    await harness.client.delete(f"earshot:session:{expired}")  # its record expired
    await harness.client.zadd(UNENDED, {"../../etc": now - AFTER_S - 7})  # not a session id: never a key
    counts = await AbandonedCalls(harness.client, AFTER_S).sweep(now)
    assert counts == SweepCounts(gone=2)
    assert await published(harness) == [] and await harness.client.zcard(UNENDED) == 0
    assert await harness.client.exists(f"earshot:session:{purged}") == 0  # nothing brought back


async def test_a_session_no_audio_reached_is_dropped_and_left_to_its_caller(harness):
    """A call went live (its offer answered) but its ICE never connected: nothing to analyse, the session unended."""
    now = time.time()
    record, _ = await harness.sessions.create("assist", "", "", owner="dana", team="billing")
    await note_unended(harness.client, record.session_id, at=now - AFTER_S - 5)
    assert await AbandonedCalls(harness.client, AFTER_S).sweep(now) == SweepCounts(unheard=1)
    assert await published(harness) == [] and await harness.client.zcard(UNENDED) == 0
    assert await state_of(harness, record.session_id) == "created"  # the caller may still start it


def test_the_wait_is_0_or_longer_than_a_page_s_reconnect():
    assert Settings().analytics_abandoned_after_s == 600
    assert Settings(analytics_abandoned_after_s=0).analytics_abandoned_after_s == 0
    with pytest.raises(SettingsError, match="analytics_abandoned_after_s must be 0"):
        Settings(analytics_abandoned_after_s=30)


async def one_worker_run_stores_the_facts(redis_url: str, settings: Settings, sessions: SessionStore, session_id: str) -> None:
    """`earshot analytics-worker --until-idle` sweeps the due entry, ends the session and stores its facts."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "earshot.server", "analytics-worker", "--until-idle", "--redis-url", redis_url,
         "--data-dir", str(settings.data_dir), "--analytics-metrics-port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stored=1" in done.stdout, done.stdout
    assert (await sessions.get(session_id)).state == "ended" and await sessions.client.zcard(UNENDED) == 0
    assert await sessions.client.exists(f"earshot:session:{session_id}:facts") == 1


async def test_the_worker_command_sweeps_before_a_batch_run(own_redis, tmp_path):
    """`earshot analytics-worker --until-idle`: the due call is ended, published and its facts stored in one run."""
    settings = replace(Settings(), data_dir=tmp_path / "data")  # the worker's storage keys: made here first
    client = connect(own_redis.url)
    try:
        sessions = SessionStore(client, Retention.from_settings(settings), Sealer.from_settings(settings))
        record, _ = await sessions.create("assist", "", "", owner="dana", team="billing")
        await sessions.update(record.session_id, state="created", audio_s=12.0)
        await sessions.save_summary(record.session_id, summary())
        await note_unended(client, record.session_id, at=time.time() - AFTER_S - 60)
        await one_worker_run_stores_the_facts(own_redis.url, settings, sessions, record.session_id)
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_call_whose_instance_is_killed_is_analysed_from_its_last_checkpoint(own_redis, tmp_path):
    """SIGKILL mid-call: no close code runs, yet the live call was noted at its offer and its summary checkpointed
    (server/modes/assist.py); once its hold lapses and the wait has passed, a worker run ends it and stores its facts."""
    speakers, _ = call_channels()
    first_turns = {name: pcm[: 14 * 16000 * 2] for name, pcm in speakers.items()}  # one turn each, then silence
    server = start_server(own_redis.url, tmp_path / "server", extra_args=("--instance-ttl-s", "2"))
    client = connect(own_redis.url)
    try:
        caller = HeadlessCaller(server.base_url, first_turns["agent"], mode="assist", speakers=first_turns)
        await caller.connect()
        session_id = caller.session_id
        assert await client.zscore(UNENDED, session_id) is not None, "a live call is noted from its offer"
        assert await caller.wait_until(lambda c: any(f.get("speaker") == "customer" for f in c.of_type("final")), 40)
        said = [f["text"] for f in caller.of_type("final")]
        # The next checkpoint after the customer's final holds it.
        settings = replace(Settings(), data_dir=tmp_path / "server")
        sessions = SessionStore(client, Retention.from_settings(settings), Sealer.from_settings(settings))
        deadline = time.monotonic() + 3 * SUMMARY_CHECKPOINT_S + 5
        while time.monotonic() < deadline:
            stored = await sessions.summary(session_id)
            if stored and len(stored.get("transcript", [])) >= len(said):
                break
            await asyncio.sleep(0.5)
        server.kill()
        killed_at = time.time()
        await caller.hangup(end_session=False)
        assert [line["text"] for line in stored["transcript"]][: len(said)] == said
        # Its hold lapses with the killed instance's heartbeat; then the entry is as old as the wait (moved back).
        deadline = time.monotonic() + 15
        while await client.exists(CALL_PREFIX + session_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not await client.exists(CALL_PREFIX + session_id)
        assert (await sessions.get(session_id)).state != "ended"
        await client.zadd(UNENDED, {session_id: time.time() - AFTER_S - 5})
        await one_worker_run_stores_the_facts(own_redis.url, settings, sessions, session_id)
        # It ended when its audio was last heard (about once a second while it came), not at its offer.
        facts = await FactsStore(client, Sealer.from_settings(settings), 3600).get(session_id)
        assert killed_at - 3 <= facts["meta"]["ended_at"] <= killed_at
    finally:
        server.stop()
        await client.aclose()

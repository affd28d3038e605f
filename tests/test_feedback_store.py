"""The intent corrections in a real Redis: sealed, kept as the transcript is, read back for training, erased with the session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from earshot.models.intent_feedback import Correction, read_jsonl
from earshot.server.at_rest import Sealer
from earshot.server.feedback_store import CORRECTIONS, CorrectionConflict, FeedbackStore, load_corrections
from earshot.server.key_rotation import Resealer
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.storage_keys import KeySource, StorageKey
from earshot.server.store import SessionStore, connect
from earshot.server.store_keys import session_key

RETENTION = Retention(live_s=3600, transcripts_s=7 * 86400, reports_s=30 * 86400, pending_s=600)
WORDS = "my card was charged twice this month"


def correction(session_id: str, utterance_id: int = 3, labels=("billing_inquiry", "complaint")) -> Correction:
    return Correction(
        label_set="call_center", text=WORDS, labels=tuple(sorted(labels)), added=("complaint",), removed=(),
        session_id=session_id, utterance_id=utterance_id, agent="agent-1", at=round(time.time(), 3),
    )


@pytest.fixture
def settings(own_redis, tmp_path) -> Settings:
    """A Redis of the test's own: load_corrections reads every correction there, under this test's key file."""
    return Settings(redis_url=own_redis.url, data_dir=tmp_path)


@pytest.fixture
async def stores(settings):
    sealer = Sealer.from_settings(settings)  # the key file under data_dir, as a server makes it
    client = connect(settings.redis_url)
    yield SessionStore(client, RETENTION, sealer), FeedbackStore(client, RETENTION, sealer)
    await client.aclose()


@pytest.fixture
async def raw(settings):
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def call_session(sessions: SessionStore, owner: str = "") -> str:
    record, _ = await sessions.create("assist", "", "medium", owner=owner, team="red" if owner else "")
    assert await sessions.append_final(record.session_id, 1, {"type": "final", "text": WORDS}, {"audio_s": 3.0})
    return record.session_id


async def test_a_correction_is_sealed_kept_as_long_as_the_transcript_and_loaded_for_training(stores, raw, settings):
    sessions, feedback = stores
    sid = await call_session(sessions)
    stored = correction(sid)
    assert await feedback.write(stored, "customer", expected="")
    key = session_key(sid, CORRECTIONS)
    value = (await raw.hgetall(key))["customer:3"]
    assert value.startswith("es1:") and WORDS not in value and "billing_inquiry" not in value
    # The same absolute expiry as the session's finals: created_at + retention_transcripts_s.
    created_ms = round((await sessions.get(sid)).created_at * 1000)
    expiry = int(await raw.execute_command("PEXPIRETIME", key))
    assert expiry == int(await raw.execute_command("PEXPIRETIME", session_key(sid, ":finals")))
    assert expiry == created_ms + RETENTION.transcripts_s * 1000

    found, raw_value = await feedback.read(sid, "customer", 3)
    assert found == stored and raw_value == value
    assert await feedback.read(sid, "agent", 3) == (None, "")  # the other side's utterance 3 is another one
    assert await feedback.of_session(sid) == [("customer", stored)]
    # What `earshot train-intent --with-feedback` reads: every correction, from the settings alone.
    assert await asyncio.to_thread(load_corrections, settings) == [stored]
    # And what `earshot export corrections` writes for a trainer elsewhere: the same records, as JSON lines.
    out = settings.data_dir / "corrections.jsonl"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "earshot.server", "export", "corrections", "--out", str(out),
         "--redis-url", settings.redis_url, "--data-dir", str(settings.data_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "1 corrections" in done.stderr, done.stderr
    assert read_jsonl(out) == [stored]


async def test_a_write_over_a_changed_correction_or_a_gone_session_writes_nothing(stores, raw):
    sessions, feedback = stores
    sid = await call_session(sessions)
    first = correction(sid)
    assert await feedback.write(first, "customer", expected="")
    with pytest.raises(CorrectionConflict):  # another click was stored since this one read
        await feedback.write(correction(sid, labels=("complaint",)), "customer", expected="")
    assert (await feedback.read(sid, "customer", 3))[0] == first
    _, then = await feedback.read(sid, "customer", 3)
    assert await feedback.write(correction(sid, labels=("complaint",)), "customer", expected=then)
    assert (await feedback.read(sid, "customer", 3))[0].labels == ("complaint",)

    assert not await feedback.write(correction("0123456789abcdef"), "customer", expected="")
    assert await raw.exists(session_key("0123456789abcdef", CORRECTIONS)) == 0  # nothing brought back


async def test_purge_and_erasure_delete_the_corrections(stores, raw, settings):
    sessions, feedback = stores
    purged = await call_session(sessions)
    assert await feedback.write(correction(purged), "agent", expected="")
    assert await sessions.purge(await sessions.get(purged)) == 4  # record, live, finals, corrections
    assert await raw.exists(session_key(purged, CORRECTIONS)) == 0

    owner = f"agent-{time.time_ns()}"
    erased = [await call_session(sessions, owner) for _ in range(2)]
    for sid in erased:
        assert await feedback.write(correction(sid), "customer", expected="")
    per_session, _ = await sessions.erase(owner)
    assert set(per_session) == set(erased)
    for sid in erased:
        assert await raw.exists(session_key(sid, CORRECTIONS)) == 0
    assert not {c.session_id for c in await asyncio.to_thread(load_corrections, settings)} & {purged, *erased}


async def test_rotate_keys_reseals_the_corrections(stores, raw, settings):
    sessions, feedback = stores
    sid = await call_session(sessions)
    stored = correction(sid)
    assert await feedback.write(stored, "customer", expected="")
    old_key = KeySource.from_settings(settings).load()[-1]  # the one key the stores seal with
    new_key = StorageKey.new()
    await Resealer(raw, Sealer([old_key, new_key])).run()
    assert (await raw.hget(session_key(sid, CORRECTIONS), "customer:3")).startswith(f"es1:{new_key.id}:")
    only_new = FeedbackStore(raw, RETENTION, Sealer([new_key]))
    assert (await only_new.read(sid, "customer", 3))[0] == stored


async def test_a_correction_that_does_not_open_is_left_out_of_training_and_logged(stores, raw, settings, caplog):
    sessions, feedback = stores
    readable, lost = await call_session(sessions), await call_session(sessions)
    assert await feedback.write(correction(readable), "customer", expected="")
    other_key = FeedbackStore(raw, RETENTION, Sealer([StorageKey.new()]))  # a key this server's file lacks
    assert await other_key.write(correction(lost), "customer", expected="")
    loaded = await asyncio.to_thread(load_corrections, settings)
    assert [c.session_id for c in loaded] == [readable]
    assert "1 sessions' corrections left out, unreadable" in caplog.text and lost in caplog.text

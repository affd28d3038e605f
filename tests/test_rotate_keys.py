"""`earshot rotate-keys` against a real Redis, with a real server running beside it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from earshot.server.at_rest import Sealer, sealed_key_id
from earshot.server.audit import AuditLog
from earshot.server.key_rotation import Resealer
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.storage_keys import StorageKey, key_file_path, read_key_file
from earshot.server.store import KEY_PREFIX, SessionStore, connect
from tests.conftest import REPO, RedisProcess, ServerProcess, start_server

FINALS = [{"type": "final", "seq": seq, "text": f"answer number {seq} about caching", "utterance_id": seq} for seq in (1, 2, 3)]
PLAIN_FINAL = {"type": "final", "seq": 1, "text": "stored before encryption existed", "utterance_id": 1}

HOUR = Retention(live_s=3600, transcripts_s=3600, reports_s=3600, pending_s=600)


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple[str, Path, ServerProcess]]:
    """A Redis of the test's own and a server on it, which made the key file under its data_dir."""
    own = RedisProcess(tmp_path / "redis")
    url = own.start()
    data_dir = tmp_path / "server"
    server = start_server(url, data_dir)
    try:
        yield url, data_dir, server
    finally:
        server.stop()
        own.stop()


def rotate(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "earshot.server", "rotate-keys", "--redis-url", url, "--data-dir", str(data_dir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


async def store_sessions(url: str, data_dir: Path) -> dict[str, tuple[str, str]]:
    """An interview, an assist call and a session stored before encryption: name -> (session id, token)."""
    store = SessionStore(connect(url), HOUR, Sealer.from_settings(Settings(data_dir=data_dir)))
    made = {}
    try:
        interview, token = await store.create("interview", "software_engineer", "easy")
        for final in FINALS:
            await store.append_final(interview.session_id, final["seq"], final, {"audio_s": final["seq"]})
        await store.update(interview.session_id, interview=json.dumps({"phase": "asking"}), pace={"wps": 2.5})
        await store.save_report(interview.session_id, {"questions": [], "note": "report text"})
        made["interview"] = (interview.session_id, token)
        assist, token = await store.create("assist", "", "medium")
        await store.append_final(assist.session_id, 1, FINALS[0], {})
        await store.save_summary(assist.session_id, {"topics": ["billing"], "note": "summary text"})
        made["assist"] = (assist.session_id, token)
        old, token = await store.create("interview", "software_engineer", "easy")
        made["plain"] = (old.session_id, token)
    finally:
        await store.close()
    # What an Earshot from before encryption wrote: plain JSON.
    client = redis.Redis.from_url(url, decode_responses=True)
    key = KEY_PREFIX + made["plain"][0]
    client.xadd(key + ":finals", {"event": json.dumps(PLAIN_FINAL)}, id="1-0")
    client.hset(key, mapping={"interview": json.dumps({"phase": "asking"}), "pace": json.dumps({"wps": 1.0})})
    client.set(key + ":report", json.dumps({"questions": [], "note": "old report"}))
    client.close()
    return made


def sealed_values(url: str) -> list[str]:
    """Every value under a session key that is sealed, or should be."""
    client = redis.Redis.from_url(url, decode_responses=True)
    found = []
    for key in client.scan_iter(match=KEY_PREFIX + "*"):
        kind = client.type(key)
        if kind == "stream":
            found += [fields["event"] for _id, fields in client.xrange(key)]
        elif kind == "string":
            found.append(client.get(key))
        elif kind == "hash":
            found += [v for v in client.hmget(key, ["interview", "pace"]) if v is not None]
    client.close()
    return found


def api_reads(server: ServerProcess, session_id: str, token: str, document: str) -> tuple[dict, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    state = httpx.get(f"{server.base_url}/api/sessions/{session_id}", headers=headers, timeout=30)
    assert state.status_code == 200, state.text
    doc = httpx.get(f"{server.base_url}/api/sessions/{session_id}/{document}", headers=headers, timeout=30)
    assert doc.status_code == 200, doc.text
    return state.json(), doc.json()


async def test_rotation_re_encrypts_everything_and_the_running_server_still_reads_it(stack, tmp_path):
    url, data_dir, server = stack
    made = await store_sessions(url, data_dir)
    first = read_key_file(key_file_path(Settings(data_dir=data_dir)))[-1].id
    raw = redis.Redis.from_url(url, decode_responses=True)
    finals_key = KEY_PREFIX + made["interview"][0] + ":finals"
    expires_before = raw.pexpiretime(finals_key)

    result = rotate(url, data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    keys = read_key_file(key_file_path(Settings(data_dir=data_dir)))
    new = keys[-1].id
    assert [k.id for k in keys] == [first, new]
    assert f"added storage key {new}" in result.stdout
    assert "4 stored before encryption now sealed" in result.stdout  # the plain session's final, interview, pace, report
    assert base64.b64encode(keys[-1].secret).decode() not in result.stdout + result.stderr

    values = sealed_values(url)
    assert len(values) == (3 + 2 + 1) + (1 + 1) + 4  # interview: finals, interview+pace, report; assist; plain
    assert {sealed_key_id(v) for v in values} == {new}
    # The stream was rebuilt with its ids, its last id and its expiry.
    assert [entry_id for entry_id, _ in raw.xrange(finals_key)] == ["1-0", "2-0", "3-0"]
    assert raw.xinfo_stream(finals_key)["last-generated-id"] == "3-0"
    assert raw.pexpiretime(finals_key) == expires_before > 0
    assert not list(raw.scan_iter(match="earshot:rotating:*"))

    # The server loaded only the first key: it meets the new id and reads the key file again.
    state, report = api_reads(server, *made["interview"], "report")
    assert [f["text"] for f in state["finals"]] == [f["text"] for f in FINALS]
    assert state["pace"] == {"wps": 2.5} and report["note"] == "report text"
    state, summary = api_reads(server, *made["assist"], "summary")
    assert state["finals"][0]["text"] == FINALS[0]["text"] and summary["note"] == "summary text"
    state, report = api_reads(server, *made["plain"], "report")
    assert state["finals"] == [PLAIN_FINAL] and report["note"] == "old report"

    audit_client = aioredis.Redis.from_url(url, decode_responses=True)
    entries, _last = await AuditLog(audit_client, 3600).page()
    await audit_client.aclose()
    rotations = [entry for _id, entry in entries if entry.action == "keys.rotate"]
    assert len(rotations) == 1 and rotations[0].who == "cli"
    assert rotations[0].detail["key"] == new and rotations[0].detail["sealed_plain"] == 4
    assert rotations[0].detail["resealed"] == 8 and rotations[0].detail["unreadable"] == 0

    # The server now writes with the new key; retiring the old one leaves everything readable,
    # and the append-only file, rewritten, no longer holds values under it.
    def append_only_files() -> bytes:
        # After a rewrite, the base file is an RDB (aof-use-rdb-preamble); a value's first bytes stay literal in it.
        return b"".join(path.read_bytes() for path in (tmp_path / "redis" / "redis" / "appendonlydir").iterdir())

    assert f"es1:{first}:".encode() in append_only_files()
    result = rotate(url, data_dir, "--no-new-key", "--retire-old")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"retired keys: {first}" in result.stdout and "rewrote its append-only file" in result.stdout
    assert [k.id for k in read_key_file(key_file_path(Settings(data_dir=data_dir)))] == [new]
    assert api_reads(server, *made["assist"], "summary")[1]["note"] == "summary text"
    assert f"es1:{first}:".encode() not in append_only_files() and f"es1:{new}:".encode() in append_only_files()
    raw.close()


class RaceResealer(Resealer):
    """Between reading a stream and committing its rebuild, a live server appends a final to it."""

    def __init__(self, client, sealer, live_writer: SessionStore, session_id: str) -> None:
        super().__init__(client, sealer)
        self._live, self._session_id, self.raced = live_writer, session_id, False

    async def _read_stream(self, pipe, key):
        entries = await super()._read_stream(pipe, key)
        if not self.raced:
            self.raced = True
            await self._live.append_final(self._session_id, 4, {"type": "final", "seq": 4, "text": "late"}, {})
        return entries


async def test_a_final_appended_during_the_rebuild_is_not_lost(own_redis):
    old, new = StorageKey.new(), StorageKey.new()
    live = SessionStore(connect(own_redis.url), HOUR, Sealer([old]))  # a server that has not seen the new key yet
    record, _ = await live.create("transcribe", "", "medium")
    for final in FINALS:
        await live.append_final(record.session_id, final["seq"], final, {})
    client = connect(own_redis.url)
    resealer = RaceResealer(client, Sealer([old, new]), live, record.session_id)
    counts = await resealer.run()
    assert resealer.raced and counts.retries == 1 and counts.unreadable == 0
    stream = await client.xrange(KEY_PREFIX + record.session_id + ":finals")
    assert [entry_id for entry_id, _ in stream] == ["1-0", "2-0", "3-0", "4-0"]
    assert {sealed_key_id(fields["event"]) for _id, fields in stream} == {new.id}
    assert [f["text"] for f in await SessionStore(client, HOUR, Sealer([old, new])).finals(record.session_id)][-1] == "late"
    await live.close()
    await client.aclose()


def test_a_key_kept_in_settings_is_not_rotated_here_and_the_message_says_how(tmp_path, redis_url):
    key = StorageKey.new()
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "rotate-keys", "--redis-url", redis_url, "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "EARSHOT_STORAGE_KEY": base64.b64encode(key.secret).decode()},
    )
    assert result.returncode == 2
    assert f"`{key.id} <the current key's base64>`" in result.stderr and "--no-new-key" in result.stderr
    assert base64.b64encode(key.secret).decode() not in result.stderr
    assert not (tmp_path / "keys").exists()

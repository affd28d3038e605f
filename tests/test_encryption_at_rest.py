"""After real calls, Redis and its append-only file hold none of the words spoken; the API still shows them.

The server runs as `make run` runs it: no storage key configured (it makes its
key file) and its own private Redis under data_dir. An interview (one
question; the LLM unreachable, so no model is needed for it) and an assist
call are placed with corpus speech; then every key is read raw (DUMP and the
type's own read) and every file under data_dir/redis, and searched for each
5+ letter word of what was said: in the corpus references and as Whisper
heard it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import redis

from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio
from earshot.models.text import normalize_text
from tests.calls import utterances_settled
from tests.conftest import corpus_file, free_port, reference_text, start_server

pytestmark = pytest.mark.slow

ANSWER = "utterances/LJ001-0009.wav"  # "Printing, then, for our purpose, may be considered as the art of making books ..."
AGENT = "utterances/LJ001-0005.wav"  # "the invention of movable metal letters in the middle of the fifteenth century ..."
CUSTOMER = "utterances/librivox-0890.wav"  # "unless to be rather cold hearted and rather selfish is to be ill disposed"


def long_words(text: str) -> set[str]:
    return {word for word in normalize_text(text).split() if len(word) >= 5 and word.isalpha()}


def found_in(blob: bytes, words: set[str]) -> set[str]:
    """The words that occur in `blob` as words (not inside longer ones), lower case or capitalised.

    Case-insensitive search would meet a 5-letter word inside base64 ciphertext by chance
    about once in a few hundred runs; as a whole word in one of its two written forms, ~1e-4.
    """
    return {
        word for word in words
        if re.search(rb"(?<![A-Za-z])(%s|%s)(?![A-Za-z])" % (word.encode(), word.capitalize().encode()), blob)
    }


async def interview(base_url: str) -> tuple[str, dict]:
    caller = HeadlessCaller(base_url, b"", role="software_engineer", difficulty="easy")
    await caller.connect()
    try:
        listening = lambda c: [e["state"] for e in c.of_type("turn")][-1:] == ["listening"]  # noqa: E731
        assert await caller.wait_until(listening, 60), "no first question"
        caller.say(read_audio(corpus_file(ANSWER)))
        assert await caller.wait_until(lambda c: c.of_type("report_ready"), 120), [e["state"] for e in caller.of_type("turn")]
        report = await caller.api("GET", "/report")
        state = await caller.session_state()
    finally:
        await caller.hangup()
    return " ".join(f["text"] for f in state["finals"]), report


async def assist_call(base_url: str) -> tuple[str, dict]:
    agent = read_audio(corpus_file(AGENT))
    customer = bytes(len(agent) + 16000) + read_audio(corpus_file(CUSTOMER))  # after the agent, 0.5 s apart
    caller = HeadlessCaller(base_url, agent, mode="assist", speakers={"agent": agent, "customer": customer})
    try:
        await caller.connect()
        duration = len(customer) / 2 / 16000
        await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + 2.0, timeout=duration + 30)
        await caller.wait_until(utterances_settled, timeout=30)
        await caller.hangup(end_session=True, keep_api=True)  # the DELETE returns once the summary is stored
        summary = await caller.api("GET", "/summary")
        state = await caller.session_state()
    finally:
        await caller.close_api()
    return " ".join(f["text"] for f in state["finals"]), summary


def everything_in_redis(socket: Path) -> bytes:
    client = redis.Redis(unix_socket_path=str(socket))  # bytes, as stored
    parts = []
    for key in client.scan_iter(match=b"*"):
        parts += [key, client.dump(key) or b""]
        kind = client.type(key)
        if kind == b"stream":
            parts += [b"%s=%s" % item for _id, fields in client.xrange(key) for item in fields.items()]
        elif kind == b"hash":
            parts += [b"%s=%s" % item for item in client.hgetall(key).items()]
        elif kind == b"string":
            parts.append(client.get(key))
    client.close()
    return b"\n".join(parts)


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


async def test_no_spoken_word_reaches_redis_or_its_files_in_plain_text(tmp_path):
    data_dir = tmp_path / "data"
    closed_port = free_port()
    server = start_server(
        "", data_dir,  # no REDIS_URL: the private Redis, as `make run` has it
        extra_args=(
            "--llm-backend", "http", "--llm-url", f"http://127.0.0.1:{closed_port}/v1", "--no-tts-enabled",
            "--interview-questions", "1", "--max-follow-ups", "0", "--turn-pause-ms", "500",
        ),
    )
    try:
        key_file = data_dir / "keys" / "storage.keys"
        assert f"made a new storage key file {key_file}" in server.log()
        heard_interview, report = await interview(server.base_url)
        heard_assist, summary = await assist_call(server.base_url)
        stored = everything_in_redis(data_dir / "redis" / "redis.sock")
    finally:
        server.stop()  # Redis stops too, writing out its append-only file

    spoken = long_words(" ".join(reference_text(c) for c in (ANSWER, AGENT, CUSTOMER)))
    heard = long_words(heard_interview + " " + heard_assist)
    # The API gives the words back in plain text: the search below finds them where they are.
    assert len(found_in(heard_interview.encode() + heard_assist.encode(), spoken)) >= 0.7 * len(spoken)
    assert found_in(str(report).encode(), long_words(reference_text(ANSWER)))
    assert summary["session_id"] and heard_assist
    assert b"es1:" in stored

    assert found_in(stored, spoken | heard) == set()
    files = files_under(data_dir / "redis")
    assert any(path.suffix == ".aof" for path in files), sorted(files)
    for path, content in files.items():
        assert found_in(content, spoken | heard) == set(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((data_dir / "redis").stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert os.path.getsize(key_file) < 400  # one key


def test_a_value_no_key_of_the_server_opens_is_a_clear_json_error(server, redis_url):
    """A key file that lost a key (or servers on one Redis with different key files): 500 `undecryptable`, logged."""
    import httpx

    from earshot.server.at_rest import Sealer
    from earshot.server.storage_keys import StorageKey

    created = httpx.post(f"{server.base_url}/api/sessions", json={"mode": "assist"}).json()
    session_id, token = created["session_id"], created["token"]
    foreign = Sealer([StorageKey.new()]).seal(session_id, '{"session_id": "x"}')
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"earshot:session:{session_id}:summary", foreign, ex=60)
        answer = httpx.get(f"{server.base_url}/api/sessions/{session_id}/summary", headers={"Authorization": f"Bearer {token}"})
    finally:
        client.close()
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "undecryptable"
    assert "which is not among the storage keys" in server.log()  # the log says which key is missing

"""Nothing said is lost: not to a server crash, not to a Redis outage."""

import signal
import subprocess
import sys
import time

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from tests.calls import call_with_pcm, finish_call, joined_clips, stored_finals
from tests.conftest import REPO, corpus_file, free_port, start_server

pytestmark = pytest.mark.slow

FIRST_PART = ["utterances/LJ001-0002.wav", "utterances/LJ001-0008.wav", "utterances/LJ001-0013.wav", "utterances/LJ001-0011.wav"]
SECOND_PART = ["utterances/timit-LDC93S1.wav", "utterances/librivox-0880.wav"]


def pcm_of(clips: list[str]) -> bytes:
    return joined_clips([corpus_file(c) for c in clips], gap_s=1.2)


async def test_server_killed_mid_session_loses_no_final(own_redis, tmp_path):
    port = free_port()
    shared_keys = ("--storage-key-file", str(tmp_path / "storage.keys"))  # servers on one Redis share its keys
    first = start_server(own_redis.url, tmp_path / "a", port=port, extra_args=shared_keys)
    caller = HeadlessCaller(first.base_url, pcm_of(FIRST_PART))
    try:
        await caller.connect()
        # Crash the server once two finals are out and the caller is still talking.
        assert await caller.wait_until(lambda c: len(c.of_type("final")) >= 2, timeout=30)
        first.kill()
        received = caller.of_type("final")
        assert not caller.track.pcm_done
    finally:
        await caller.hangup(end_session=False)

    second = start_server(own_redis.url, tmp_path / "b", port=port, extra_args=shared_keys)
    try:
        again = HeadlessCaller(second.base_url, pcm_of(SECOND_PART), session_id=caller.session_id, token=caller.token)
        await call_with_pcm(again)
        ready = again.of_type("ready")[0]
        assert ready["resumed_finals"] >= len(received)
        new_finals = again.of_type("final")
        assert new_finals
        state = await again.session_state()
        stored = state["finals"]
        # Every final the caller saw before the crash is stored, and the session went on after it.
        assert [f["text"] for f in stored[: len(received)]] == [f["text"] for f in received]
        assert [f["seq"] for f in stored] == list(range(1, len(stored) + 1))
        assert stored[-len(new_finals):] == [{k: v for k, v in f.items()} for f in new_finals]
        # The audio clock and utterance numbers continue rather than restart.
        assert new_finals[0]["start"] > received[-1]["end"]
        assert new_finals[0]["utterance_id"] > received[-1]["utterance_id"]
        await again.hangup()
    finally:
        second.stop()


async def test_redis_lost_mid_session_buffers_finals_and_writes_them_when_back(own_redis, tmp_path):
    server = start_server(own_redis.url, tmp_path / "srv")
    caller = HeadlessCaller(server.base_url, pcm_of(FIRST_PART + SECOND_PART))
    try:
        await caller.connect()
        assert await caller.wait_until(lambda c: len(c.of_type("final")) >= 1, timeout=30)
        own_redis.stop()
        # The call goes on: more finals arrive while Redis is down, and the client is told.
        assert await caller.wait_until(lambda c: len(c.of_type("final")) >= 3, timeout=30)
        assert any(e["code"] == "store_unavailable" for e in caller.of_type("error"))
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/healthz")).status_code == 503
            down = await http.get(f"/api/sessions/{caller.session_id}", headers={"Authorization": f"Bearer {caller.token}"})
            assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"
        own_redis.start()
        await finish_call(caller)
        received = caller.of_type("final")
        assert len(received) >= len(FIRST_PART + SECOND_PART) - 1
        stored = await stored_finals(caller, expected=len(received))
        assert [f["seq"] for f in stored] == [f["seq"] for f in received]
        assert [f["text"] for f in stored] == [f["text"] for f in received]
    finally:
        await caller.hangup()
        server.stop()


def test_redis_unreachable_at_start_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "serve", "--redis-url", "redis://127.0.0.1:1/0", "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in result.stderr


def test_bad_settings_are_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "serve", "--vad-aggressiveness", "9", "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "vad_aggressiveness must be 0, 1, 2 or 3" in result.stderr


def test_private_redis_keeps_sessions_across_a_crash_and_stops_with_the_server(tmp_path):
    """With no REDIS_URL the server runs its own redis-server, which must outlive a crash of the server."""
    from earshot.server.redis_server import PrivateRedis, _answers

    data_dir = tmp_path / "data"
    port = free_port()

    def serve() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "earshot.server", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return process
            except httpx.HTTPError:
                time.sleep(0.2)
        process.kill()
        raise AssertionError("server did not start")

    first = serve()
    created = httpx.post(f"http://127.0.0.1:{port}/api/sessions", json={"role": "consultancy"}).json()
    first.kill()  # SIGKILL: its Redis is left running, with the session in it
    first.wait()
    second = serve()
    try:
        auth = {"Authorization": f"Bearer {created['token']}"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/sessions/{created['session_id']}", headers=auth).status_code == 200
    finally:
        second.send_signal(signal.SIGTERM)  # a clean stop also stops the private Redis
        assert second.wait(timeout=30) == 0
    assert not _answers(PrivateRedis(data_dir).socket_path)

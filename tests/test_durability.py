"""Nothing said is lost: not to a Redis outage, not to a crash of the server and its private Redis (an instance SIGKILLed mid-call, its call resumed on another: tests/test_instances.py)."""

import signal
import subprocess
import sys
import time

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from tests.calls import finish_call, joined_clips, stored_finals
from tests.conftest import REPO, corpus_file, free_port, start_server

pytestmark = pytest.mark.slow

FIRST_PART = ["utterances/LJ001-0002.wav", "utterances/LJ001-0008.wav", "utterances/LJ001-0013.wav", "utterances/LJ001-0011.wav"]
SECOND_PART = ["utterances/timit-LDC93S1.wav", "utterances/librivox-0880.wav"]


def pcm_of(clips: list[str]) -> bytes:
    return joined_clips([corpus_file(c) for c in clips], gap_s=1.2)


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

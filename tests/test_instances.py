"""Two `earshot serve` processes on one Redis: placement, losing one mid-call, draining one, and the race.

Real everything: redis-server, two server processes on loopback ports, aiortc
callers with corpus speech. The callers know each instance's URL, as a load
balancer would; which instance answers a call is the servers' business.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis

from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.server_process import wait_ready
from earshot.server.at_rest import Sealer
from earshot.server.settings import Settings
from tests.calls import finish_call, joined_clips, stored_finals
from tests.conftest import CORPUS, REPO, ServerProcess, corpus_file, start_server
from tests.tcp_relay import TcpRelay, unix
from tests.test_api_errors import offer_sdp
from tests.test_metrics import scrape

pytestmark = pytest.mark.slow

CLIPS = ["utterances/LJ001-0002.wav", "utterances/LJ001-0008.wav", "utterances/LJ001-0013.wav", "utterances/LJ001-0011.wav"]
MORE = ["utterances/timit-LDC93S1.wav", "utterances/librivox-0880.wav"]
TTL_S = 2.0


def pcm_of(clips: list[str]) -> bytes:
    return joined_clips([corpus_file(c) for c in clips], gap_s=1.2)


def start_pair(redis_url: str, tmp_path: Path, group: str, *extra: str) -> tuple[ServerProcess, ServerProcess]:
    """Instances a and b of `group`, sharing one storage key file as every instance on one Redis must."""
    keys = tmp_path / "storage.keys"
    Sealer.from_settings(replace(Settings(), storage_key_file=str(keys)))  # made once, before either starts
    servers = [
        start_server(
            redis_url, tmp_path / name, wait=False,
            extra_args=("--instance-group", group, "--instance-id", name, "--instance-ttl-s", str(TTL_S),
                        "--storage-key-file", str(keys), *extra),
        )
        for name in ("a", "b")
    ]
    for server in servers:
        wait_ready(server)
    return servers[0], servers[1]


def live_calls(server: ServerProcess) -> int:
    return httpx.get(server.base_url + "/healthz", timeout=5).json()["live_sessions"]


@pytest.fixture(scope="module")
def pair(redis_url, tmp_path_factory):
    a, b = start_pair(redis_url, tmp_path_factory.mktemp("pair"), "pair", "--max-live-calls", "2", "--drain-grace-s", "4")
    yield a, b
    a.stop()
    b.stop()


async def test_sessions_made_on_one_instance_are_spread_over_both_and_refused_only_when_all_are_full(pair, redis_url):
    a, b = pair
    holders = redis.Redis.from_url(redis_url, decode_responses=True)
    callers = [HeadlessCaller(a.base_url, pcm_of(CLIPS[:1])) for _ in range(4)]
    try:
        for caller in callers:  # all through a: placement sends half of them to b, by the offer's hop
            await caller.create_session()
        await asyncio.gather(*(caller.connect() for caller in callers))
        assert (live_calls(a), live_calls(b)) == (2, 2)
        held = {c.session_id: holders.get(f"earshot:call:{c.session_id}") for c in callers}
        assert sorted(held.values()) == ["a", "a", "b", "b"]
        async with httpx.AsyncClient(base_url=a.base_url, timeout=30) as http:
            refused = await http.post("/api/sessions", json={"role": "software_engineer"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "at_capacity"
            assert int(refused.headers["retry-after"]) >= 1
            assert scrape(a.base_url).get("earshot_sessions_rejected_total{reason=at_capacity}", 0) >= 1
        # Every call is live, and says so to a, wherever it runs.
        assert all([(await c.api("GET", ""))["live"] for c in callers])
        await asyncio.gather(*(finish_call(c) for c in callers))
        for caller in callers:  # every call got its final, wherever it ran
            assert caller.of_type("final"), caller.session_id
        # A call on b ended through a, its connection still up: the DELETE goes to b, which ends it.
        on_b = next(c for c in callers if held[c.session_id] == "b")
        ended = await on_b.api("DELETE", "")
        assert ended["state"] == "ended" and ended["finals"] == len(on_b.of_type("final"))
        assert live_calls(b) == 1 and holders.get(f"earshot:call:{on_b.session_id}") is None
    finally:
        await asyncio.gather(*(c.hangup() for c in callers))


async def test_simultaneous_offers_to_two_instances_give_one_call(pair):
    a, b = pair
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(3):
            made = (await http.post(a.base_url + "/api/sessions", json={"role": "software_engineer"})).json()
            auth = {"Authorization": f"Bearer {made['token']}"}
            path = f"/api/sessions/{made['session_id']}/offer"
            body = {"sdp": await offer_sdp(True, True), "type": "offer"}
            # As if each had come by a hop: each instance answers it itself, and only Redis decides.
            hopped = {**auth, "x-earshot-forwarded-by": "test"}
            answers = await asyncio.gather(
                http.post(a.base_url + path, json=body, headers=hopped), http.post(b.base_url + path, json=body, headers=hopped),
            )
            codes = sorted(r.status_code for r in answers)
            assert codes == [200, 409], [r.text for r in answers]
            refused = next(r for r in answers if r.status_code == 409)
            assert refused.json()["error"]["code"] in ("session_live", "offer_in_progress")
            assert (await http.delete(a.base_url + f"/api/sessions/{made['session_id']}", headers=auth)).status_code == 200


@pytest.fixture
def fresh_pair(redis_url, tmp_path):
    """A pair for one test that kills one of them; whatever is left is stopped after it."""
    servers = start_pair(redis_url, tmp_path, "failover")
    yield servers
    for server in servers:
        server.stop()


async def test_a_killed_instance_loses_no_final_and_the_call_resumes_on_the_other(fresh_pair):
    a, b = fresh_pair
    first = HeadlessCaller(a.base_url, pcm_of(CLIPS))
    try:
        await first.connect()  # made and placed on a (a tie goes to the instance asked)
        assert live_calls(a) == 1
        assert await first.wait_until(lambda c: len(c.of_type("final")) >= 2, timeout=40)
        a.kill()  # SIGKILL mid-call: nothing of a's shutdown runs
        before = first.of_type("final")
        questions_before = [e["question_index"] for e in first.of_type("turn")]
    finally:
        await first.hangup(end_session=False)
    again = HeadlessCaller(b.base_url, pcm_of(MORE), session_id=first.session_id, token=first.token)
    try:
        await again.connect()  # b waits for a's hold to lapse (503 call_moving), then takes the call
        assert any(code == "call_moving" for code, _ in again.offer_waits), again.offer_waits
        assert scrape(b.base_url)["earshot_reconnects_total"] == 1
        await finish_call(again)
        assert again.of_type("ready")[0]["instance"] == "b"
        after = again.of_type("final")
        assert after
        stored = await stored_finals(again, expected=len(before) + len(after))
        seqs = [f["seq"] for f in stored]
        assert seqs == list(range(1, len(stored) + 1))  # none lost in the middle, none twice
        received = {f["seq"]: f for f in [*before, *after]}
        assert len(received) == len(before) + len(after)  # no final received twice
        # What the caller saw is what is stored; anything stored but not yet seen comes with the resume.
        assert all(stored[seq - 1]["text"] == final["text"] for seq, final in received.items())
        assert again.of_type("ready")[0]["resumed_finals"] >= len(before)
        missed = set(seqs) - set(received)
        assert missed <= set(range(len(before) + 1, again.of_type("ready")[0]["resumed_finals"] + 1))
        # The audio clock, the utterance numbers and the interview go on where they were.
        assert after[0]["start"] > before[-1]["end"] and after[0]["utterance_id"] > before[-1]["utterance_id"]
        resumed_at = [e["question_index"] for e in again.of_type("turn")]
        assert questions_before and resumed_at and resumed_at[0] >= max(questions_before) >= 1
    finally:
        await again.hangup()


async def test_an_instance_without_redis_is_a_clear_503_and_the_caller_tries_another(pair, redis_url, tmp_path):
    a, _b = pair
    link = TcpRelay([unix(redis_url.removeprefix("unix://"))])  # c's way to Redis, which the test cuts
    c = start_server(f"redis://127.0.0.1:{link.port}/0", tmp_path / "c", extra_args=(
        "--instance-group", "pair", "--instance-id", "c", "--instance-ttl-s", str(TTL_S)))
    sessions = redis.Redis.from_url(redis_url)
    try:
        link.cut()
        before = len(sessions.keys("earshot:session:*"))
        made = httpx.post(c.base_url + "/api/sessions", json={"role": "software_engineer"}, timeout=10)
        assert made.status_code == 503 and made.json()["error"]["code"] == "store_unavailable"
        assert len(sessions.keys("earshot:session:*")) == before  # nothing half-made
        assert httpx.get(c.base_url + "/healthz/ready", timeout=5).json()["status"] == "store_unavailable"
        caller = HeadlessCaller(a.base_url, pcm_of(CLIPS[:1]))
        await caller.create_session()  # perhaps placed on c, which beat last less than a TTL ago
        # Its offer reaches c first, as a load balancer might send it: c says why, and the caller goes on
        # to a, which answers it (itself, if the session was placed on c: c cannot take it now).
        again = HeadlessCaller(c.base_url, pcm_of(CLIPS[:1]), session_id=caller.session_id, token=caller.token,
                               other_urls=(a.base_url,))
        try:
            await again.connect()
            assert again.offer_waits == [("store_unavailable", 0.0)]
            assert await again.wait_until(lambda c: len(c.of_type("final")) >= 1, timeout=30)
        finally:
            await again.hangup()
            await caller.close_api()
    finally:
        c.kill()


def test_a_load_test_through_one_instance_spreads_over_both_and_none_is_refused_below_capacity(pair, tmp_path):
    a, b = pair
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "loadtest", "--url", a.base_url, "--sessions", "4", "--duration", "8",
         "--ramp-up", "1", "--audio", str(CORPUS / "utterances"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (level,) = json.loads((out / "loadtest.json").read_text())["levels"]
    assert level["calls"]["completed"] == 4 and level["errors"] == {}  # 4 calls: both instances' room, none refused
    assert level["instances"] == {"a": 2, "b": 2}
    assert "calls per instance" in (out / "loadtest.html").read_text()


async def test_sigterm_drains_live_calls_then_closes_them_with_a_notice_and_they_resume_elsewhere(pair):
    a, b = pair  # last in the module: a stops here
    caller = HeadlessCaller(a.base_url, pcm_of(CLIPS * 2))
    try:
        await caller.connect()
        assert live_calls(a) == 1
        assert await caller.wait_until(lambda c: len(c.of_type("final")) >= 1, timeout=40)
        a.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(50):
                ready = await http.get(a.base_url + "/healthz/ready")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.1)
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            assert (await http.get(a.base_url + "/healthz/live")).status_code == 200  # still serving
            # A session asked of the draining instance is placed on the other.
            newcomer = HeadlessCaller(a.base_url, pcm_of(CLIPS[:1]))
            await newcomer.connect()
            assert live_calls(b) == 1
            await newcomer.hangup()
        # The live call went on through the grace period, then was closed with the notice.
        assert await caller.wait_until(lambda c: any(e["code"] == "server_draining" for e in c.of_type("error")), timeout=20)
        a.process.wait(timeout=30)
        assert a.process.returncode == 0, a.log()
        before = caller.of_type("final")
    finally:
        await caller.hangup(end_session=False)
    again = HeadlessCaller(b.base_url, pcm_of(MORE), session_id=caller.session_id, token=caller.token)
    try:
        await again.connect()  # a released the call as it closed it: no wait for a lapse
        assert not any(code == "call_moving" for code, _ in again.offer_waits)
        await finish_call(again)
        stored = await stored_finals(again, expected=len(before) + 1)
        assert [f["seq"] for f in stored] == list(range(1, len(stored) + 1))
        assert [f["text"] for f in stored[: len(before)]] == [f["text"] for f in before]
    finally:
        await again.hangup()

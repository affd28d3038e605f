"""Limits that protect the box: rate limits, admission control, Redis maxmemory (server/limits.py).

The limiter's arithmetic is checked with a clock of the test's own; the rest
against real server processes with low limits, a real Redis and, for the
live-call cap, a real headless caller holding a call.
"""

import asyncio
from typing import Iterator, Optional

import httpx
import pytest
import redis

from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio
from earshot.server.limits import PendingSessions, RateLimiter
from earshot.server.redis_server import PrivateRedis
from earshot.server.store import KEY_PREFIX
from tests.conftest import ServerProcess, corpus_file, start_server
from tests.test_api_errors import assert_error, new_session, offer_sdp

SESSION = {"mode": "interview", "role": "data_scientist", "difficulty": "easy"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limiter, with a clock of the test's own --------------------------------------------
def test_a_bucket_allows_a_minute_s_worth_then_says_when_to_come_back():
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 20  # 3 a minute: one back every 20 s
    assert limiter.take("b") == 0  # each caller has its own bucket
    clock.now += 19.5
    assert limiter.take("a") == 1  # half a second short, rounded up to a whole second
    clock.now += 1.0
    assert limiter.take("a") == 0


def test_zero_means_no_limit():
    limiter = RateLimiter(0, Clock())
    assert all(limiter.take("a") == 0 for _ in range(10_000))
    assert len(limiter) == 0


def test_the_defaults_never_stop_a_person_and_stop_a_script_within_a_few_hundred_requests():
    clock = Clock()
    sessions, offers = RateLimiter(30, clock), RateLimiter(60, clock)
    for _ in range(120):  # a busy person: a session and two offers every 30 s for an hour
        assert sessions.take("ip:10.0.0.1") == 0
        assert offers.take("ip:10.0.0.1") == 0 and offers.take("ip:10.0.0.1") == 0
        clock.now += 30
    hammered = [sessions.take("ip:127.0.0.1") for _ in range(300)]  # a script, all at once
    assert hammered.index(next(wait for wait in hammered if wait)) == 30
    assert all(wait >= 1 for wait in hammered[30:])


def test_idle_callers_are_forgotten_and_memory_stays_bounded():
    clock = Clock()
    limiter = RateLimiter(5, clock, max_keys=100)
    for i in range(50):
        limiter.take(f"ip:{i}")
    assert len(limiter) == 50
    clock.now += 61  # their buckets are full again: the same as never seen
    limiter.take("ip:new")
    assert len(limiter) == 1
    for i in range(1000):  # more callers at once than it keeps
        limiter.take(f"ip:flood-{i}")
    assert len(limiter) <= 100


def test_pending_sessions_count_until_offered_or_lapsed():
    clock = Clock()
    pending = PendingSessions(cap=2, ttl_s=60, clock=clock)
    pending.add("a")
    with pending.creating():  # a session being written counts before it has an id
        assert pending.full()
    pending.add("b")
    assert pending.full()
    pending.remove("a")  # offered
    assert not pending.full()
    pending.add("c")
    clock.now += 60  # b and c lapse with their Redis keys
    assert len(pending) == 0 and not pending.full()


# --- a real server with low limits ------------------------------------------------------------
def from_address(address: str) -> httpx.Client:
    """A client whose requests come from `address` (any of 127.0.0.0/8): a caller of its own to the limits."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def create(base_url: str, http: Optional[httpx.Client] = None) -> httpx.Response:
    return (http or httpx).post(base_url + "/api/sessions", json=SESSION, timeout=30)


def delete(base_url: str, session: dict) -> httpx.Response:
    auth = {"Authorization": f"Bearer {session['token']}"}
    return httpx.delete(f"{base_url}/api/sessions/{session['session_id']}", headers=auth, timeout=30)


@pytest.fixture(scope="module")
def small_server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    """Room for 3 pending sessions and 1 live call; a session that never connects lives 60 s."""
    srv = start_server(
        redis_url, tmp_path_factory.mktemp("small"),
        extra_args=("--max-pending-sessions", "3", "--max-live-calls", "1", "--pending-session-ttl-s", "60"),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    private = PrivateRedis(tmp_path_factory.mktemp("small-redis"), maxmemory="4mb")
    private.start()
    yield private
    private.stop()


@pytest.fixture(scope="module")
def rate_limited_server(small_redis, tmp_path_factory) -> Iterator[ServerProcess]:
    srv = start_server(
        small_redis.url, tmp_path_factory.mktemp("rated"),
        extra_args=("--rate-sessions-per-min", "5", "--rate-offers-per-min", "3"),
    )
    yield srv
    srv.stop()


def test_the_private_redis_has_maxmemory_and_evicts_nothing(small_redis):
    client = redis.Redis(unix_socket_path=str(small_redis.socket_path))
    assert client.config_get("maxmemory")["maxmemory"] == str(4 * 1024 * 1024)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_session_creation_past_the_rate_is_429_with_retry_after_per_caller(rate_limited_server):
    base = rate_limited_server.base_url
    with from_address("127.0.0.2") as hammering, from_address("127.0.0.3") as someone_else:
        assert [create(base, hammering).status_code for _ in range(5)] == [201] * 5
        refused = create(base, hammering)
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert create(base, someone_else).status_code == 201  # each address has its own allowance


def test_offers_past_the_rate_are_429_bad_ones_included(rate_limited_server):
    url = rate_limited_server.base_url + "/api/sessions/0000000000000000/offer"
    with from_address("127.0.0.4") as http:
        for _ in range(3):  # a script sending garbage spends its allowance as much as one sending offers
            assert_error(http.post(url, json={"sdp": "hello", "type": "offer"}), 404, "unknown_session")
        refused = http.post(url, json={"sdp": "hello", "type": "offer"})
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1


def test_a_full_redis_is_a_clear_507_not_a_500(rate_limited_server, small_redis):
    base = rate_limited_server.base_url
    made = create(base).json()
    client = redis.Redis(unix_socket_path=str(small_redis.socket_path))
    fillers = 0
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for fillers in range(1, 200):
                client.set(f"filler:{fillers}", b"x" * 100_000)
        assert client.exists(KEY_PREFIX + made["session_id"], "filler:1") == 2  # nothing was evicted to make room
        # Full it is; pinned there, so that freed buffers (the AOF's) cannot let a write slip in.
        client.config_set("maxmemory", str(1024 * 1024))
        assert_error(delete(base, made), 507, "store_full")  # ending a session is a write
        assert_error(create(base), 507, "store_full")
        auth = {"Authorization": f"Bearer {made['token']}"}
        assert httpx.get(f"{base}/api/sessions/{made['session_id']}", headers=auth, timeout=30).status_code == 200
    finally:
        client.config_set("maxmemory", str(4 * 1024 * 1024))
        client.delete(*(f"filler:{i}" for i in range(1, fillers + 1)))
    assert delete(base, made).status_code == 200  # room again: nothing was evicted, nothing lost
    assert "Traceback" not in rate_limited_server.log()


def test_pending_sessions_past_the_cap_are_503_and_lapse_soon(small_server, redis_url):
    made = [create(small_server.base_url) for _ in range(3)]
    assert [r.status_code for r in made] == [201] * 3
    refused = create(small_server.base_url)
    assert_error(refused, 503, "at_capacity")
    assert int(refused.headers["retry-after"]) >= 1
    # A session that never connects lives pending_session_ttl_s in Redis, not its full retention.
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl(KEY_PREFIX + made[0].json()["session_id"]) <= 60
    # Ending one frees its place.
    assert delete(small_server.base_url, made[0].json()).status_code == 200
    last = create(small_server.base_url)
    assert last.status_code == 201
    for response in [*made[1:], last]:
        delete(small_server.base_url, response.json())


async def test_live_calls_past_the_cap_are_503_and_a_connected_session_lives_its_full_ttl(small_server, redis_url):
    client = redis.Redis.from_url(redis_url)
    caller = HeadlessCaller(small_server.base_url, read_audio(corpus_file("utterances/LJ001-0002.wav")))
    async with httpx.AsyncClient(base_url=small_server.base_url, timeout=30) as http:
        session_id, auth = await new_session(http)  # made while there is room: placed here
        url = f"/api/sessions/{session_id}/offer"
        try:
            await caller.connect()
            key = KEY_PREFIX + caller.session_id
            for _ in range(50):  # the call's first write (state: live) extends the key
                if client.ttl(key) > 60:
                    break
                await asyncio.sleep(0.1)
            assert client.ttl(key) > 60
            refused = await http.post(url, json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth)
            assert_error(refused, 503, "at_capacity")
            assert int(refused.headers["retry-after"]) >= 1
            # A new session is refused at once: no instance of its group has room for its call.
            refused = await http.post("/api/sessions", json={"role": "software_engineer"})
            assert_error(refused, 503, "at_capacity")
            assert int(refused.headers["retry-after"]) >= 1
        finally:
            await caller.hangup()
        # The hung-up call's place is free again.
        answered = await http.post(url, json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth)
        assert answered.status_code == 200, answered.text
        assert (await http.delete(f"/api/sessions/{session_id}", headers=auth)).status_code == 200

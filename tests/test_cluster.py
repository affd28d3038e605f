"""Placement, heartbeats and holding a call, between Cluster objects on one real redis-server.

The instances here are Cluster objects in one process, each with its own
connection, as many `earshot serve` processes would have: what they agree on
is only what is in Redis. tests/test_instances.py runs real server processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from earshot.server.cluster import Cluster
from earshot.server.settings import Settings
from earshot.server.store import StoreUnavailable, connect


class Instance:
    """A Cluster with a count of calls a test sets."""

    def __init__(self, url: str, name: str, capacity: int = 2, ttl_s: float = 1.0, group: str = "g") -> None:
        self.busy = 0
        self.held: list[str] = []
        self.lost: list[str] = []
        settings = replace(
            Settings(), instance_id=name, instance_group=group, advertise_url=f"http://{name}.test:8000",
            max_live_calls=capacity, instance_ttl_s=ttl_s,
        )
        self.cluster = Cluster(connect(url), settings, busy=lambda: self.busy, held=lambda: list(self.held))

        async def lost(session_id: str) -> None:
            self.lost.append(session_id)

        self.cluster.on_lost = lost


@pytest.fixture
async def redis_url(own_redis):
    yield own_redis.url
    client = aioredis.Redis.from_url(own_redis.url)
    await client.flushall()
    await client.aclose()


async def test_placement_spreads_sessions_by_room_and_counts_those_not_yet_offered(redis_url):
    a, b = Instance(redis_url, "a", capacity=3), Instance(redis_url, "b", capacity=3)
    a.busy = 1
    await a.cluster.beat()
    await b.cluster.beat()
    picks = [await a.cluster.place(f"s{i}", pending_s=60) for i in range(5)]
    names = [p.instance_id for p in picks]
    # b has the most room first; then each placement counts: a 1 live + 2 placed, b 3 placed.
    assert names.count("a") == 2 and names.count("b") == 3, names
    assert {p.url for p in picks} == {"http://a.test:8000", "http://b.test:8000"}
    # Rooms are counted by live calls: with both full, nothing has room.
    a.busy, b.busy = 3, 3
    await a.cluster.beat()
    await b.cluster.beat()
    assert await a.cluster.place("s9", pending_s=60) is None


async def test_a_draining_or_stale_instance_is_out_of_placement(redis_url):
    a, b = Instance(redis_url, "a", ttl_s=1.0), Instance(redis_url, "b", ttl_s=1.0)
    await a.cluster.beat()
    await b.cluster.beat()
    b.cluster.drain()
    await b.cluster.beat()
    assert {(await a.cluster.place(f"d{i}", 60)).instance_id for i in range(4)} == {"a"}
    # b comes back, then stops beating (killed): out of placement once its beat lapses.
    b.cluster.draining = False
    await b.cluster.beat()
    assert (await b.cluster.instance("b")) is not None
    await asyncio.sleep(1.2)
    await a.cluster.beat()
    assert await b.cluster.instance("b") is None
    assert {(await a.cluster.place(f"e{i}", 60)).instance_id for i in range(4)} == {"a"}


async def test_groups_on_one_redis_never_place_on_each_other(redis_url):
    # Even under one instance id (two deployments' pods named alike): each group sees its own.
    a, other = Instance(redis_url, "a", group="one"), Instance(redis_url, "a", group="two", capacity=50)
    await a.cluster.beat()
    await other.cluster.beat()
    assert (await a.cluster.instance("a")).capacity == 2
    assert {(await a.cluster.place(f"s{i}", 60)).instance_id for i in range(3)} == {"a"}
    a.busy = 2
    await a.cluster.beat()
    assert await a.cluster.place("full", 60) is None  # the other group's room is not this group's


async def test_two_instances_claiming_one_session_never_both_hold_it(redis_url):
    a, b = Instance(redis_url, "a"), Instance(redis_url, "b")
    for round_ in range(50):
        session_id = f"race{round_}"
        won = await asyncio.gather(a.cluster.claim(session_id), b.cluster.claim(session_id))
        assert sorted(won) == [False, True], (round_, won)
        holder, left_s = await a.cluster.holder(session_id)
        assert holder == ("a" if won[0] else "b") and 0 < left_s <= 1.0
        assert await (a if won[0] else b).cluster.claim(session_id)  # the holder may claim again (a new offer)


async def test_a_hold_lapses_only_when_its_holder_stops_renewing_and_a_taken_call_is_lost(redis_url):
    a, b = Instance(redis_url, "a", ttl_s=1.0), Instance(redis_url, "b", ttl_s=1.0)
    assert await a.cluster.claim("s1")
    a.held = ["s1"]
    for _ in range(3):  # renewed by each beat: still a's well past one TTL
        await asyncio.sleep(0.5)
        await a.cluster.beat()
        assert not await b.cluster.claim("s1")
    await asyncio.sleep(1.2)  # a stopped beating (killed, or cut off from Redis)
    assert await b.cluster.claim("s1")
    await a.cluster.beat()  # a is back: it finds the call held by b, and closes its own
    assert a.lost == ["s1"]
    assert (await b.cluster.holder("s1"))[0] == "b"
    # A release by one that does not hold the call deletes nothing.
    await a.cluster.release("s1")
    assert (await b.cluster.holder("s1"))[0] == "b"
    await b.cluster.release("s1")
    assert (await b.cluster.holder("s1"))[0] is None


async def test_placement_with_redis_away_is_store_unavailable(own_redis):
    a = Instance(own_redis.url, "a")
    await a.cluster.beat()
    own_redis.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await a.cluster.place("s1", 60)
        with pytest.raises(StoreUnavailable):
            await a.cluster.claim("s1")
    finally:
        own_redis.start()

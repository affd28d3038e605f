"""Many Earshot instances on one Redis: who is up, where a new session goes, and who holds a call.

Every instance beats: each `instance_ttl_s / 3` it writes what it is to Redis,

    earshot:instances:{group}       set, the ids of the instances of an instance_group that beat
    earshot:instance:{group}:{id}   string, JSON {url, capacity, busy, ready}, expiring after instance_ttl_s
    earshot:placed:{group}:{id}     sorted set, sessions placed on it and not yet offered (score: when that lapses)
    earshot:call:{session id}       string, the id of the instance that holds the session's call, expiring
                                    after instance_ttl_s unless that instance renews it

and it beats at once when a call starts or ends, or when it starts to drain.
An instance that stops beating (killed, or cut off from Redis) drops out of
placement when its key expires, and so do the calls it held: another instance
may take a call over once its `earshot:call:` key has lapsed, never before.

Placement (`place`) is one script, so simultaneous creations on many instances
see each other: it picks the ready instance with the most room, counting the
sessions placed there and not yet offered, and records the pick there. Room is
capacity (max_live_calls) minus the calls it holds or is setting up; a session
placed and never offered stops counting once its pending key would lapse.

Holding a call (`claim`) is a SET NX with the instance's TTL: of two instances
that answer offers for one session at once, one holds it and the other gets
nothing (api.py answers 409 session_live). `renew` keeps an instance's calls
held; a call whose key another instance now holds is one this instance lost
(it was cut off from Redis for longer than the TTL) and closes.

Why scripts: each reads and then writes, and Redis runs a script alone. The
key names are built inside them, so this needs one Redis (or a primary with
replicas), not Redis Cluster's sharding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable, Optional

import redis.asyncio as aioredis

from earshot.server.settings import Settings
from earshot.server.store import guarded

log = logging.getLogger(__name__)

GROUP_PREFIX = "earshot:instances:"
INSTANCE_PREFIX = "earshot:instance:"  # then {group}:{id}
PLACED_PREFIX = "earshot:placed:"  # then {group}:{id}
CALL_PREFIX = "earshot:call:"

# KEYS: the group's set. ARGV: now (ms), the session id, when its placement lapses (ms), this instance's
# id, then the prefixes of the group's instance keys and placed sets.
# Returns {id, url} of the instance picked, or {} when none has room.
PLACE_SCRIPT = """
local best, best_url, best_score = nil, nil, nil
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local beat = redis.call('GET', ARGV[5] .. id)
  if not beat then
    redis.call('SREM', KEYS[1], id)
  else
    beat = cjson.decode(beat)
    local placed = ARGV[6] .. id
    redis.call('ZREMRANGEBYSCORE', placed, '-inf', ARGV[1])
    local room = beat.capacity - beat.busy
    local score = room - redis.call('ZCARD', placed)
    if beat.ready and room > 0 and (best == nil or score > best_score or (score == best_score and id == ARGV[4])) then
      best, best_url, best_score = id, beat.url, score
    end
  end
end
if best == nil then return {} end
local placed = ARGV[6] .. best
redis.call('ZADD', placed, ARGV[3], ARGV[2])
redis.call('PEXPIREAT', placed, ARGV[3])
return {best, best_url}
"""

# KEYS: the call's key. ARGV: this instance's id, the TTL (ms). 1: held by this instance now.
CLAIM_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the call keys. ARGV: this instance's id, the TTL (ms). Returns the keys another instance holds.
RENEW_SCRIPT = """
local lost = {}
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == false or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
"""

# KEYS: the call's key. ARGV: this instance's id. Deletes it only if this instance holds it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Beat:
    """What an instance says of itself each beat."""

    url: str  # where the other instances reach its HTTP port
    capacity: int  # max_live_calls
    busy: int  # calls held or being set up
    ready: bool  # takes new sessions: not draining


@dataclass(frozen=True)
class Placement:
    instance_id: str
    url: str


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def advertised_url(settings: Settings) -> str:
    if settings.advertise_url:
        return settings.advertise_url.rstrip("/")
    scheme = "https" if settings.tls or settings.tls_cert else "http"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{settings.port}"


class Cluster:
    """This instance's part in the cluster: its beat, placement, and the calls it holds."""

    def __init__(
        self, client: aioredis.Redis, settings: Settings, busy: Callable[[], int], held: Callable[[], list[str]]
    ) -> None:
        self.instance_id = settings.instance_id or default_instance_id()
        self._group = GROUP_PREFIX + settings.instance_group
        self._instances = f"{INSTANCE_PREFIX}{settings.instance_group}:"
        self._placed = f"{PLACED_PREFIX}{settings.instance_group}:"
        self.url = advertised_url(settings)
        self.ttl_s = settings.instance_ttl_s
        self._capacity = settings.max_live_calls
        self._busy = busy  # calls held or being set up, now
        self._held = held  # the session ids whose calls (or unwritten finals) this instance holds
        self._redis = client
        self._place = client.register_script(PLACE_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self.draining = False
        self._wake = asyncio.Event()
        self.on_lost: Callable[[str], Awaitable[None]] = _nothing  # a call another instance took over

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    def beat_soon(self) -> None:
        """Something placement counts changed: beat now rather than at the next tick."""
        self._wake.set()

    def drain(self) -> None:
        """Take no new sessions from now on (ready goes false) and say so at once."""
        self.draining = True
        self.beat_soon()

    def beat_now(self) -> Beat:
        return Beat(url=self.url, capacity=self._capacity, busy=self._busy(), ready=not self.draining)

    async def beat(self) -> None:
        """Say what this instance is, and keep its calls held; close those another instance took."""
        beat = json.dumps(asdict(self.beat_now()))

        async def write() -> list[str]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._instances + self.instance_id, beat, px=self.ttl_ms)
                pipe.sadd(self._group, self.instance_id)
                await pipe.execute()
            held = self._held()
            if not held:
                return []
            return await self._renew(keys=[CALL_PREFIX + s for s in held], args=[self.instance_id, self.ttl_ms])

        lost = await guarded(write)
        for key in lost:
            session_id = key[len(CALL_PREFIX):]
            log.warning("session %s: its call is held by another instance now; closing it here", session_id)
            await self.on_lost(session_id)

    async def run(self) -> None:
        """Beat every TTL/3 (and at once when woken) until cancelled; a Redis outage is logged, not fatal."""
        while True:
            self._wake.clear()
            try:
                await self.beat()
            except Exception as exc:  # StoreUnavailable mostly: the next beat tries again
                log.warning("heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.ttl_s / 3)
            except asyncio.TimeoutError:
                pass

    async def leave(self) -> None:
        """Out of placement now (a clean stop): the key goes rather than lapsing."""
        async def delete() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._instances + self.instance_id, self._placed + self.instance_id)
                pipe.srem(self._group, self.instance_id)
                await pipe.execute()

        await guarded(delete)

    async def place(self, session_id: str, pending_s: float) -> Optional[Placement]:
        """The instance a new session goes to (recorded there), or None when no instance has room."""
        now_ms = int(time.time() * 1000)
        lapses_ms = now_ms + int(pending_s * 1000)
        picked = await guarded(
            lambda: self._place(
                keys=[self._group], args=[now_ms, session_id, lapses_ms, self.instance_id, self._instances, self._placed]
            )
        )
        return Placement(picked[0], picked[1]) if picked else None

    async def unplace(self, instance_id: str, session_id: str) -> None:
        """The session no longer waits for its offer there: its call started, or its creation failed."""
        await guarded(lambda: self._redis.zrem(self._placed + instance_id, session_id))

    async def instance(self, instance_id: str) -> Optional[Beat]:
        """An instance's last beat, or None once it has lapsed."""
        raw = await guarded(lambda: self._redis.get(self._instances + instance_id))
        return Beat(**json.loads(raw)) if raw else None

    async def holder(self, session_id: str) -> tuple[Optional[str], float]:
        """The instance holding the session's call, if any, and how long until its hold lapses (s)."""
        async def read() -> list:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(CALL_PREFIX + session_id)
                pipe.pttl(CALL_PREFIX + session_id)
                return await pipe.execute()

        holder, pttl_ms = await guarded(read)
        return holder, max(0.0, pttl_ms / 1000) if holder else 0.0

    async def claim(self, session_id: str) -> bool:
        """Hold the session's call here; False when another instance holds it."""
        key = CALL_PREFIX + session_id
        return bool(await guarded(lambda: self._claim(keys=[key], args=[self.instance_id, self.ttl_ms])))

    async def release(self, session_id: str) -> None:
        """The call here is over: another instance may take the session at once."""
        key = CALL_PREFIX + session_id
        await guarded(lambda: self._release(keys=[key], args=[self.instance_id]))


def retry_after_s(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


async def _nothing(session_id: str) -> None:
    return None

"""Ended calls as a stream of messages, and the consumer group that works through them.

    DELETE /api/sessions/{id} --publish--> earshot:analytics:calls (stream)
                                               |  consumer group "analytics"
                            earshot analytics-worker (as many as are started) --> per-call facts
                                               |  a message that fails N times, or cannot be read
                                               v
                                      earshot:analytics:dead (stream: the message, its reason)

A call closed with no DELETE gets there too, later: a worker's sweep (server/abandoned_calls.py).
A message names the call (session id, mode, when it ended) and nothing else: no words,
no names. The worker reads the rest from the session's sealed keys.

What the worker needs from a stream is `CallStream`: fetch a batch, ack one, dead-letter
one. Redis Streams give each of those directly:

    fetch        XAUTOCLAIM (messages another consumer took and left unacknowledged for
                 `claim_idle_s`: it crashed, or the work failed) then XREADGROUP ">"
    tries        the entry's delivery count (XPENDING)
    ack          XACK, and XDEL: a handled message is not kept
    dead-letter  XADD to the dead stream with the reason, then XACK + XDEL, in one MULTI

The same interface runs on Kafka (README, "Analytics"): a consumer group is a Kafka
consumer group, ack is a committed offset, a crashed consumer's partitions are reassigned
after its session timeout (the idle claim), tries are counted in a header or a retry topic,
and the dead stream is a dead-letter topic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Mapping, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from earshot.server.store import is_session_id

log = logging.getLogger(__name__)

STREAM = "earshot:analytics:calls"
DEAD_STREAM = "earshot:analytics:dead"
GROUP = "analytics"
MODES = ("assist", "interview")
STREAM_MAXLEN = 100_000  # unhandled messages kept at most (approximate trim): days of a busy site's calls


class MalformedMessage(ValueError):
    """A message that names no call the worker can read (its problem)."""


@dataclass(frozen=True)
class CallEnded:
    """The message: a call has ended and its facts are due."""

    session_id: str
    mode: str  # assist | interview
    ended_at: float  # unix time

    def fields(self) -> dict[str, str]:
        return {"session_id": self.session_id, "mode": self.mode, "ended_at": f"{self.ended_at:.3f}"}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> "CallEnded":
        session_id = fields.get("session_id", "")
        if not is_session_id(session_id):
            raise MalformedMessage(f"session_id {session_id[:40]!r} is not a session id")
        mode = fields.get("mode", "")
        if mode not in MODES:
            raise MalformedMessage(f"mode {mode[:40]!r} is not one of {', '.join(MODES)}")
        try:
            ended_at = float(fields.get("ended_at", ""))
        except ValueError:
            raise MalformedMessage(f"ended_at {fields.get('ended_at', '')[:40]!r} is not a time") from None
        return cls(session_id, mode, ended_at)


@dataclass(frozen=True)
class Delivery:
    """One message as a consumer got it: its id, its fields, and how often it has been delivered."""

    message_id: str
    fields: dict[str, str]
    tries: int


class CallStream(Protocol):
    async def fetch(self, count: int, block_ms: int) -> list[Delivery]: ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def dead_letter(self, delivery: Delivery, reason: str) -> None: ...


async def publish(client: aioredis.Redis, ended: CallEnded) -> str:
    """Put an ended call on the stream; its message id."""
    return await client.xadd(STREAM, ended.fields(), maxlen=STREAM_MAXLEN, approximate=True)


class RedisCallStream:
    """`CallStream` on a Redis stream and its consumer group; `consumer` names this worker in the group."""

    def __init__(self, client: aioredis.Redis, consumer: str, claim_idle_s: float) -> None:
        self._redis = client
        self.consumer = consumer
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._claim_cursor = "0-0"

    async def join(self) -> None:
        """Create the group (reading from the stream's start) unless it exists."""
        try:
            await self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def fetch(self, count: int, block_ms: int) -> list[Delivery]:
        """Abandoned messages first (left unacknowledged past the idle time), else new ones."""
        claimed = await self._claim(count)
        if claimed:
            return claimed
        answer = await self._redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=count, block=block_ms)
        return [Delivery(message_id, dict(fields), 1) for _stream, entries in answer or [] for message_id, fields in entries]

    async def _claim(self, count: int) -> list[Delivery]:
        cursor, entries, *deleted = await self._redis.xautoclaim(
            STREAM, GROUP, self.consumer, min_idle_time=self._claim_idle_ms, start_id=self._claim_cursor, count=count
        )
        self._claim_cursor = cursor
        for message_id in deleted[0] if deleted else []:  # trimmed away while pending: nothing to do
            await self._redis.xack(STREAM, GROUP, message_id)
        deliveries = []
        for message_id, fields in entries:
            if fields is None:
                continue
            pending = await self._redis.xpending_range(STREAM, GROUP, min=message_id, max=message_id, count=1)
            tries = int(pending[0]["times_delivered"]) if pending else 1
            deliveries.append(Delivery(message_id, dict(fields), tries))
        return deliveries

    async def ack(self, delivery: Delivery) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, delivery.message_id)
            pipe.xdel(STREAM, delivery.message_id)
            await pipe.execute()

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.warning("analytics: message %s dead-lettered after %d tries: %s", delivery.message_id, delivery.tries, reason)
        entry = {
            **{f"message.{name}": value[:200] for name, value in delivery.fields.items()},
            "message_id": delivery.message_id,
            "reason": reason[:500],
            "tries": str(delivery.tries),
            "at": f"{time.time():.3f}",
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(DEAD_STREAM, entry, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.xack(STREAM, GROUP, delivery.message_id)
            pipe.xdel(STREAM, delivery.message_id)
            await pipe.execute()

"""Limits that protect the box: per-caller rate limits and admission control.

Rate limits (429 `rate_limited`, with Retry-After): a token bucket per caller
for session creation and one for offers. A caller is its identity's name
when the request has one (server/auth.py sets `request.state.identity`),
else its IP address. A bucket holds a minute's worth of requests and refills
at the per-minute rate, so a person (a few sessions an hour) never meets it,
and a script hammering the API meets it after one minute's worth (30 session
creations, 60 offers by default), from loopback too. A bucket left alone for
a minute is full, the same as no bucket: those are dropped, and past
MAX_KEYS callers the least recently seen go first, so memory stays bounded.

Admission control (503 `at_capacity`, with Retry-After): a cap on sessions
created but not yet offered, and one on live calls. Pending sessions are
counted here, in the process, not in Redis: the count is exact with no race
(one event loop, no await between the check and the count), it costs no
Redis round trip per request, and it needs no cleanup, since a pending
session's entry lapses with its Redis key (`pending_session_ttl_s`). What it
gives up: after a restart the count starts at zero while the earlier pending
keys live out their short TTL (at most twice the cap for that long), and
servers sharing one Redis count each their own; Redis's maxmemory (with
noeviction, server/redis_server.py) bounds the memory whatever the count.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from starlette.requests import Request

from earshot.server.errors import ApiError
from earshot.server.retention import Retention
from earshot.server.settings import Settings

Clock = Callable[[], float]

MAX_KEYS = 10_000  # callers remembered at once (about 1 MB)
RETRY_AT_CAPACITY_S = 10  # what a refused caller is told to wait when the server is full


class RateLimiter:
    """A token bucket per key: `per_min` requests at once, refilled at `per_min` a minute; 0 = no limit."""

    def __init__(self, per_min: int, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.per_min = per_min
        self._per_s = per_min / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when); oldest first

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> int:
        """Spend one request of `key`'s: 0 when it may go ahead, else the whole seconds until it may."""
        if self.per_min <= 0:
            return 0
        now = self._clock()
        self._forget_idle(now)
        tokens, when = self._buckets.pop(key, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - when) * self._per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self._per_s))

    def _forget_idle(self, now: float) -> None:
        refill_s = 60.0  # an empty bucket is full again after a minute: a key idle that long is as good as new
        while self._buckets:
            _key, (_tokens, when) = next(iter(self._buckets.items()))
            if now - when < refill_s and len(self._buckets) < self._max_keys:
                break
            self._buckets.popitem(last=False)


class PendingSessions:
    """Sessions created but not yet offered, until their short-lived Redis keys would lapse."""

    def __init__(self, cap: int, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self.cap = cap
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # session id -> when it lapses; soonest first
        self._creating = 0  # admitted, and being written to Redis

    def __len__(self) -> int:
        self._forget_lapsed()
        return len(self._expiry)

    def full(self) -> bool:
        return len(self) + self._creating >= self.cap

    @contextmanager
    def creating(self) -> Iterator[None]:
        """A session admitted and being stored counts before it has an id (then `add` it)."""
        self._creating += 1
        try:
            yield
        finally:
            self._creating -= 1

    def add(self, session_id: str) -> None:
        self._expiry[session_id] = self._clock() + self._ttl_s

    def remove(self, session_id: str) -> None:
        self._expiry.pop(session_id, None)

    def _forget_lapsed(self) -> None:
        now = self._clock()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)


@dataclass
class Limits:
    sessions: RateLimiter  # session creations per caller
    offers: RateLimiter  # offers per caller
    pending: PendingSessions
    max_live_calls: int

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> "Limits":
        return cls(
            sessions=RateLimiter(settings.rate_sessions_per_min, clock),
            offers=RateLimiter(settings.rate_offers_per_min, clock),
            pending=PendingSessions(settings.max_pending_sessions, Retention.from_settings(settings).pending_s, clock),
            max_live_calls=settings.max_live_calls,
        )

    def check_rate(self, limiter: RateLimiter, request: Request) -> None:
        wait_s = limiter.take(caller_key(request))
        if wait_s:
            raise ApiError(
                429, "rate_limited", f"too many requests; at most {limiter.per_min} a minute",
                headers={"Retry-After": str(wait_s)},
            )

    def admit_session(self) -> None:
        if self.pending.full():
            raise at_capacity("too many sessions wait to connect; try again shortly")

    def admit_call(self, calls_now: int) -> None:
        if calls_now >= self.max_live_calls:
            raise at_capacity("the server is at its capacity for live calls; try again shortly")


def at_capacity(message: str) -> ApiError:
    return ApiError(503, "at_capacity", message, headers={"Retry-After": str(RETRY_AT_CAPACITY_S)})


def caller_key(request: Request) -> str:
    """Who a request counts against: its identity when it has one, else its IP address."""
    identity = getattr(request.state, "identity", None)
    if identity is not None:
        return "identity:" + identity.name
    return "ip:" + (request.client.host if request.client is not None else "unknown")

"""Calls that end with no DELETE (tab closed, network gone, instance killed): analysed once, later.

    a call goes live (its offer answered)                            --ZADD-->  earshot:analytics:unended
    a call closes, its session not ended                             --ZADD-->  (sorted set, score: when it
                                                                                 went live or closed)
    DELETE (ended or purged)                                         --ZREM-->
    the analytics worker, every `sweep_period_s`: each entry older than `analytics_abandoned_after_s`,
    in one script
        its entry is gone, or newer by now (another worker took it,
        or the session went live or closed again)                  -> nothing
        a call of the session is live on some instance
        (its hold, earshot:call:{id}, server/cluster.py)           -> re-scored now: looked at again later
        the session is gone (purged, erased, expired)              -> entry dropped, nothing published
        the session is ended (a DELETE came: it published)         -> entry dropped, nothing published
        no audio ever reached it (its ICE never connected)         -> entry dropped, the session left as it is
        else                                                       -> state "ended" (what a DELETE sets),
                                                                      CallEnded on the analytics stream
                                                                      (ended_at: the entry's score, or when
                                                                      audio was last heard if later),
                                                                      entry removed: all in the same step

Noting a call when it goes live, not only when it closes, covers the instance that dies without running
its close code (SIGKILL, a lost node): its hold lapses within `instance_ttl_s`, and the sweep then ends and
publishes the session `analytics_abandoned_after_s` after it went live (or was last found live). Its
`ended_at` is when its audio was last heard: the live state's `heard_at`, written with the audio clock
about once a second while audio comes (server/webrtc.py), not when the entry was last written. What the
worker analyses is what that instance left in Redis: an interview's finals, and an assist call's summary,
which a live call stores every `SUMMARY_CHECKPOINT_S` (server/modes/assist.py).

A script runs alone, so of several workers sweeping the same entry one publishes and the others find
it gone: a call is published once. What the stream's consumers do with it is server/analytics_worker.py.

A call whose offer was refused leaves no entry, and one whose ICE never connected is dropped unended
(no audio): the caller may still start that session. The set is kept to its newest `MAX_ENTRIES` (what no
worker ever sweeps must not grow without end).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Optional

import redis.asyncio as aioredis

from earshot.server.analytics_stream import MODES, STREAM, STREAM_MAXLEN
from earshot.server.cluster import CALL_PREFIX
from earshot.server.settings import Settings
from earshot.server.store import guarded, is_session_id
from earshot.server.store_keys import session_key

log = logging.getLogger(__name__)

UNENDED = "earshot:analytics:unended"
MAX_ENTRIES = STREAM_MAXLEN  # unended calls waiting at most: days of a busy site's calls
SWEEP_BATCH = 100  # entries taken per round trip of ZRANGEBYSCORE

# KEYS: the unended set, the session's record, its call hold, the analytics stream, its live state (audio_s, heard_at).
# ARGV: the session id, the cutoff (entries at or before it are due), now, the stream's MAXLEN, the
# analysed modes (",assist,interview,"). Returns what happened to the entry (SweepCounts' fields).
SWEEP_SCRIPT = """
local noted_at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not noted_at or tonumber(noted_at) > tonumber(ARGV[2]) then return 'not_due' end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 'live'
end
redis.call('ZREM', KEYS[1], ARGV[1])
local record = redis.call('HMGET', KEYS[2], 'created_at', 'state', 'mode')
if not record[1] then return 'gone' end
if record[2] == 'ended' then return 'ended' end
local live = redis.call('HMGET', KEYS[5], 'audio_s', 'heard_at')
if (tonumber(live[1]) or 0) <= 0 then return 'unheard' end
redis.call('HSET', KEYS[2], 'state', 'ended')
local mode = record[3] or ''
if mode == '' or not string.find(ARGV[5], ',' .. mode .. ',', 1, true) then return 'unanalysed' end
local ended_at = math.max(tonumber(noted_at), tonumber(live[2]) or 0)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'session_id', ARGV[1], 'mode', mode, 'ended_at', string.format('%.3f', ended_at))
return 'published'
"""


@dataclass
class SweepCounts:
    published: int = 0  # ended, and put on the analytics stream
    unanalysed: int = 0  # ended; its mode is not analysed
    ended: int = 0  # already ended by a DELETE: dropped
    gone: int = 0  # purged, erased or expired: dropped
    unheard: int = 0  # no audio reached it (never connected): dropped, the session not ended
    live: int = 0  # a call of it is live: looked at again later
    not_due: int = 0  # another worker took it, or it went live or closed again since

    def add(self, other: "SweepCounts") -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


async def note_unended(client: aioredis.Redis, session_id: str, at: Optional[float] = None) -> None:
    """A call of the session went live, or closed without ending it: due for analytics `after_s` later unless
    it is live then or DELETEd meanwhile."""
    async def write() -> None:
        async with client.pipeline(transaction=True) as pipe:
            pipe.zadd(UNENDED, {session_id: time.time() if at is None else at})
            pipe.zremrangebyrank(UNENDED, 0, -(MAX_ENTRIES + 1))  # the oldest beyond the cap
            await pipe.execute()

    await guarded(write)


async def forget(client: aioredis.Redis, session_id: str) -> None:
    """The session was ended (DELETE) or purged: nothing is due for it here."""
    await guarded(lambda: client.zrem(UNENDED, session_id))


def sweep_period_s(after_s: float) -> float:
    """How often a worker looks: a tenth of the wait, at most a minute (an entry is at most that late)."""
    return min(60.0, max(0.05, after_s / 10))


class AbandonedCalls:
    """The sweep a worker runs: due entries end and are published (SWEEP_SCRIPT), each exactly once."""

    def __init__(self, client: aioredis.Redis, after_s: float) -> None:
        self._redis = client
        self.after_s = after_s
        self._script = client.register_script(SWEEP_SCRIPT)
        self.counts = SweepCounts()

    async def sweep(self, now: Optional[float] = None) -> SweepCounts:
        """Every entry noted `after_s` or more before `now`, once; what happened to them."""
        now = time.time() if now is None else now
        cutoff = now - self.after_s
        counts = SweepCounts()
        modes = "," + ",".join(MODES) + ","
        seen: set[str] = set()
        while True:
            due = await guarded(lambda: self._redis.zrangebyscore(UNENDED, "-inf", cutoff, start=0, num=SWEEP_BATCH))
            due = [member for member in due if member not in seen]
            if not due:
                break
            for member in due:
                seen.add(member)
                if not is_session_id(member):  # nothing else may become part of a key
                    await forget(self._redis, member)
                    continue
                keys = [UNENDED, session_key(member), CALL_PREFIX + member, STREAM, session_key(member, ":live")]
                args = [member, repr(cutoff), repr(now), STREAM_MAXLEN, modes]  # exact: the same cutoff as the range
                outcome = await guarded(lambda: self._script(keys=keys, args=args))
                setattr(counts, outcome, getattr(counts, outcome) + 1)
                if outcome == "published":
                    log.info("analytics: session %s, no DELETE and no live call for over %.0f s: ended and published",
                             member, self.after_s)
        self.counts.add(counts)
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_period_s` until `stop` is set; a Redis outage is logged, and the next sweep tries again."""
        period = sweep_period_s(self.after_s)
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - StoreUnavailable mostly: the entries wait for the next sweep
                log.warning("analytics: abandoned calls not swept: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), period)
            except asyncio.TimeoutError:
                pass


def noted(settings: Settings, mode: str) -> bool:
    """Whether a server notes a call of `mode` that closes without a DELETE."""
    return settings.analytics_enabled and settings.analytics_abandoned_after_s > 0 and mode in MODES

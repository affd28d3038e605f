"""Where per-call facts live, written once, with the totals the dashboards read.

    earshot:session:{id}:facts   string, the call's facts (sealed like its summary; deleted with the session)
    earshot:analytics:ended      sorted set, session id by the time its call ended (the calls page's index)
    earshot:analytics:totals     hash, the counters behind the manager's metrics (server/analytics_metrics.py)

Written once. A message can be handled twice: a worker that crashed after writing and
before acknowledging leaves it for another. WRITE_ONCE_SCRIPT writes the facts only when
there are none, and adds to the totals in the same step, so a call is counted once however
often its message is handled. It writes nothing when the session is gone (purged, erased,
expired): facts of a deleted call must not come back. The facts expire with the session's
reports (retention_reports_s, counted from its creation, as every session key is).

The index can outlive facts (a session expires, or is erased); readers skip those ids and
prune the index. Facts sealed under a key the reader's settings lack (another deployment on
the same Redis) are left out of a listing and logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Optional

import redis.asyncio as aioredis

from earshot.server.at_rest import SealError, Sealer
from earshot.server.store import guarded
from earshot.server.store_keys import session_key

log = logging.getLogger(__name__)

ENDED_INDEX = "earshot:analytics:ended"
TOTALS = "earshot:analytics:totals"
PAGE = 200  # facts read and unsealed at a time

# KEYS: the session's record, its facts key, the index, the totals.
# ARGV: the reports retention (ms), the sealed facts, the ended time (index score), the session id,
# then counter increments (name, amount, ...). Returns 1 written, 0 already there, -1 no session.
WRITE_ONCE_SCRIPT = """
local created = redis.call('HGET', KEYS[1], 'created_at')
if not created then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local expire_at = math.floor(tonumber(created) * 1000) + tonumber(ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', expire_at)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
for i = 5, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[4], ARGV[i], ARGV[i + 1])
end
return 1
"""


class FactsStore:
    def __init__(self, client: aioredis.Redis, sealer: Sealer, reports_retention_s: int) -> None:
        self._redis = client
        self._sealer = sealer
        self._retention_ms = reports_retention_s * 1000
        self._write_once = client.register_script(WRITE_ONCE_SCRIPT)

    async def write_once(self, facts: dict[str, Any], increments: dict[str, float]) -> int:
        """Store a call's facts and count them in the totals, unless already stored: 1, 0, or -1 (no session)."""
        session_id = facts["meta"]["session_id"]
        sealed = self._sealer.seal(session_id, json.dumps(facts))
        keys = [session_key(session_id), session_key(session_id, ":facts"), ENDED_INDEX, TOTALS]
        args: list[Any] = [self._retention_ms, sealed, facts["meta"]["ended_at"], session_id]
        for name, amount in increments.items():
            args += [name, amount]
        return int(await guarded(lambda: self._write_once(keys=keys, args=args)))

    async def get(self, session_id: str) -> Optional[dict[str, Any]]:
        raw = await guarded(lambda: self._redis.get(session_key(session_id, ":facts")))
        return json.loads(self._sealer.unseal(session_id, raw)) if raw else None

    async def ended_between(self, since: float, until: float, limit: int) -> list[dict[str, Any]]:
        """Facts of calls that ended in [since, until], newest first, at most `limit`."""
        return [facts async for facts in self.newest_first(since, until, limit)]

    async def newest_first(self, since: float, until: float, most: int) -> AsyncIterator[dict[str, Any]]:
        """Facts of calls that ended in [since, until], newest first, read and unsealed a page at a time.

        A reader that stops early (the calls page once it has its `limit` of matches) reads no more pages.
        """
        offset = 0
        while offset < most:
            ids = await guarded(lambda: self._redis.zrevrangebyscore(
                ENDED_INDEX, until, since, start=offset, num=min(PAGE, most - offset)))
            if not ids:
                return
            raws = await guarded(lambda: self._redis.mget([session_key(i, ":facts") for i in ids]))
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if gone:  # expired or erased since: the index forgets them (and the next page starts that much nearer)
                await guarded(lambda: self._redis.zrem(ENDED_INDEX, *gone))
            offset += len(ids) - len(gone)
            for session_id, raw in zip(ids, raws):
                if raw is None:
                    continue
                try:
                    found = json.loads(self._sealer.unseal(session_id, raw))
                except SealError as exc:  # sealed under a key these settings lack: left out, not a failed page
                    log.warning("facts of session %s left out: %s", session_id, exc)
                    continue
                yield found
            if len(ids) < PAGE:
                return

    async def totals(self) -> dict[str, float]:
        raw = await guarded(lambda: self._redis.hgetall(TOTALS))
        return {name: float(value) for name, value in raw.items()}

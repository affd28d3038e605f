"""Re-encrypting what is stored with the storage key that encrypts now (`earshot rotate-keys`).

Every session key is visited (SCAN `earshot:session:*`) and each sealed value
(server/store.py: the finals' `event`, the report, the summary, the hash
fields in SEALED_FIELDS; every field of a session's intent corrections,
server/feedback_store.py) is opened and sealed again with the current key;
a value stored before encryption existed is sealed for the first time.

Each key is changed in one transaction under WATCH, so a live server that
writes to it meanwhile (a final appended, the interview state updated) makes
the transaction fail and be tried again with what is there now: nothing a
live call writes is lost. A stream's entries cannot be changed in place:
the stream is built again under a temporary key with the same entry ids, the
same last id (XSETID: a retried XADD of an old final is still refused) and
the same absolute expiry, then RENAMEd over the old one.

A value that does not open (its key is gone, or it was altered) is left as
it is and counted.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Optional

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from earshot.server.at_rest import Sealer, SealError, sealed_key_id
from earshot.server.store import KEY_PREFIX, SEALED_FIELDS, is_session_id

SEALED_STRINGS = (":report", ":summary", ":facts", ":rescored")  # string keys whose whole value is sealed
SEALED_HASHES = (":corrections",)  # hash keys whose every field's value is sealed (server/feedback_store.py)
FINALS = ":finals"  # the stream whose entries' `event` is sealed
TEMPORARY_PREFIX = "earshot:rotating:"  # outside KEY_PREFIX: the scan never meets a stream being rebuilt
MAX_TRIES = 50


class RotationError(RuntimeError):
    """A key kept changing under every try."""


@dataclass
class ResealCounts:
    keys: int = 0  # session keys that hold sealed values
    resealed: int = 0  # values moved from an older key to the current one
    sealed_plain: int = 0  # values stored before encryption existed, sealed now
    current: int = 0  # values already under the current key
    unreadable: int = 0  # values that did not open: left as they are
    retries: int = 0  # transactions tried again because a live server wrote meanwhile

    def add(self, other: "ResealCounts") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# What a read step hands back: None (nothing to change), or the writes to queue and their tally.
Plan = Optional[tuple[Callable[[Pipeline], None], ResealCounts]]


class Resealer:
    def __init__(self, client: aioredis.Redis, sealer: Sealer) -> None:
        self._redis = client  # decode_responses=True (server/store.py `connect`)
        self._sealer = sealer
        self.counts = ResealCounts()

    async def run(self) -> ResealCounts:
        async for key in self._redis.scan_iter(match=KEY_PREFIX + "*", count=500):
            session_id = key[len(KEY_PREFIX):].split(":")[0]
            if not is_session_id(session_id):
                continue
            kind = await self._redis.type(key)
            if kind == "stream" and key.endswith(FINALS):
                await self._transact(key, lambda pipe, key=key: self._plan_stream(pipe, key, session_id))
            elif kind == "string" and key.endswith(SEALED_STRINGS):
                await self._transact(key, lambda pipe, key=key: self._plan_string(pipe, key, session_id))
            elif kind == "hash":
                every = key.endswith(SEALED_HASHES)
                await self._transact(key, lambda pipe, key=key, every=every: self._plan_hash(pipe, key, session_id, every))
        return self.counts

    async def _transact(self, key: str, plan: Callable[[Pipeline], Awaitable[Plan]]) -> None:
        for _ in range(MAX_TRIES):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    planned = await plan(pipe)
                    if planned is None:
                        return
                    writes, tally = planned
                    pipe.multi()
                    writes(pipe)
                    await pipe.execute()
                except WatchError:
                    self.counts.retries += 1
                    continue
            self.counts.add(tally)
            return
        raise RotationError(f"{key} changed under each of {MAX_TRIES} tries; run rotate-keys again")

    def _reseal(self, session_id: str, stored: str, tally: ResealCounts) -> Optional[str]:
        """`stored` under the current key, counted in `tally`; None when it stays as it is."""
        was_sealed = sealed_key_id(stored) is not None
        try:
            resealed = self._sealer.reseal(session_id, stored)
        except SealError:
            tally.unreadable += 1
            return None
        if resealed is None:
            tally.current += 1
        elif was_sealed:
            tally.resealed += 1
        else:
            tally.sealed_plain += 1
        return resealed

    async def _read_stream(self, pipe: Pipeline, key: str) -> list[tuple[str, dict[str, str]]]:
        return await pipe.xrange(key)

    async def _plan_stream(self, pipe: Pipeline, key: str, session_id: str) -> Plan:
        tally = ResealCounts(keys=1)
        entries = []
        changed = False
        for entry_id, fields in await self._read_stream(pipe, key):
            resealed = self._reseal(session_id, fields["event"], tally) if "event" in fields else None
            changed = changed or resealed is not None
            entries.append((entry_id, {**fields, "event": resealed} if resealed is not None else fields))
        if not changed:
            self.counts.add(tally)
            return None
        last_id = (await pipe.xinfo_stream(key))["last-generated-id"]
        expires_at_ms = await pipe.pexpiretime(key)  # -1: no expiry
        temporary = TEMPORARY_PREFIX + secrets.token_hex(8)

        def writes(p: Pipeline) -> None:
            for entry_id, fields in entries:
                p.xadd(temporary, fields, id=entry_id)
            p.execute_command("XSETID", temporary, last_id)
            if expires_at_ms > 0:
                p.pexpireat(temporary, expires_at_ms)
            p.rename(temporary, key)

        return writes, tally

    async def _plan_string(self, pipe: Pipeline, key: str, session_id: str) -> Plan:
        tally = ResealCounts(keys=1)
        stored = await pipe.get(key)
        resealed = self._reseal(session_id, stored, tally) if stored is not None else None
        if resealed is None:
            self.counts.add(tally)
            return None
        return (lambda p: p.set(key, resealed, keepttl=True)), tally

    async def _plan_hash(self, pipe: Pipeline, key: str, session_id: str, every: bool = False) -> Plan:
        tally = ResealCounts()
        updates: dict[str, Any] = {}
        names = list(await pipe.hkeys(key)) if every else list(SEALED_FIELDS)
        for name, stored in zip(names, await pipe.hmget(key, names) if names else []):
            if stored is None:
                continue
            tally.keys = 1
            resealed = self._reseal(session_id, stored, tally)
            if resealed is not None:
                updates[name] = resealed
        if not updates:
            self.counts.add(tally)
            return None
        return (lambda p: p.hset(key, mapping=updates)), tally

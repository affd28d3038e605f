"""The agents' intent corrections in Redis: one hash per session, one field per corrected utterance.

    earshot:session:{id}:corrections   hash: "<speaker>:<utterance id>" -> sealed JSON of a Correction
                                       (models/intent_feedback.py), with the utterance's speaker added

The value holds the utterance's words, so it is sealed like the transcript it
came from (server/at_rest.py, the session id as associated data), and kept as
long as the transcript: the key is in SESSION_KEYS with the `transcripts`
retention (server/store_keys.py), expiring at the session's created_at plus
retention_transcripts_s like the finals, and a purge or an erasure of the
session deletes it with the session's other keys. `earshot train-intent
--with-feedback` reads them within that time (`load_corrections`).

A write goes through one script that writes nothing when the session is gone
(as every session write: server/store_keys.py) and only when the field still
holds what the writer read: two clicks on one utterance answered by two
requests at once cannot lose one another (the later one reads again and
applies its change to what the first stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Optional

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from earshot.models.intent_feedback import Correction, CorrectionError
from earshot.server.at_rest import Sealer, SealError
from earshot.server.retention import Retention
from earshot.server.store import KEY_PREFIX, guarded, is_session_id
from earshot.server.store_keys import session_key

if TYPE_CHECKING:
    from earshot.server.settings import Settings

log = logging.getLogger(__name__)

CORRECTIONS = ":corrections"

# KEYS: the record, the corrections hash. ARGV: the retention in ms, the field, what the writer read
# there ("" for nothing), the new value. Returns 1 (written), 0 (the session is gone), or -1 (the
# field changed since it was read: read again). The expiry is absolute, from the record's created_at.
WRITE_CORRECTION_SCRIPT = """
local created = redis.call('HGET', KEYS[1], 'created_at')
if not created then return 0 end
local now = redis.call('HGET', KEYS[2], ARGV[2]) or ''
if now ~= ARGV[3] then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
local base = math.floor(tonumber(created) * 1000 + 0.5)
redis.call('PEXPIREAT', KEYS[2], string.format('%.0f', base + tonumber(ARGV[1])))
return 1
"""


class CorrectionConflict(RuntimeError):
    """The stored correction changed between the read and the write."""


def field_name(speaker: str, utterance_id: int) -> str:
    return f"{speaker}:{utterance_id}"


class FeedbackStore:
    def __init__(self, client: aioredis.Redis, retention: Retention, sealer: Sealer) -> None:
        self._redis = client
        self._retention = retention
        self._sealer = sealer
        self._write_script = client.register_script(WRITE_CORRECTION_SCRIPT)

    async def read(self, session_id: str, speaker: str, utterance_id: int) -> tuple[Optional[Correction], str]:
        """The utterance's stored correction, if any, and the raw value (the write's `expected`)."""
        key = session_key(session_id, CORRECTIONS)
        raw = await guarded(lambda: self._redis.hget(key, field_name(speaker, utterance_id)))
        if not raw:
            return None, ""
        return Correction.from_dict(json.loads(self._sealer.unseal(session_id, raw))), raw

    async def write(self, correction: Correction, speaker: str, expected: str) -> bool:
        """Store `correction` over `expected` (what `read` gave); False: the session is gone.

        Raises CorrectionConflict when the field no longer holds `expected`."""
        session_id = correction.session_id
        value = self._sealer.seal(session_id, json.dumps({**correction.to_dict(), "speaker": speaker}))
        keys = [session_key(session_id), session_key(session_id, CORRECTIONS)]
        args = [str(self._retention.transcripts_s * 1000), field_name(speaker, correction.utterance_id), expected, value]
        done = int(await guarded(lambda: self._write_script(keys=keys, args=args)))
        if done < 0:
            raise CorrectionConflict(f"the correction of {session_id} {field_name(speaker, correction.utterance_id)} changed")
        return done == 1

    async def of_session(self, session_id: str) -> list[tuple[str, Correction]]:
        """The session's corrections, each with its utterance's speaker, in utterance order (the read-back,
        GET /api/sessions/{id}/corrections, and the call summary). One that does not open is left out and
        logged at WARNING, as `scan_corrections` does: the others are still shown."""
        raw = await guarded(lambda: self._redis.hgetall(session_key(session_id, CORRECTIONS)))
        found, unreadable = [], []
        for field, value in raw.items():
            try:
                found.append((field.rpartition(":")[0], _opened(self._sealer, session_id, value)))
            except (SealError, ValueError, CorrectionError) as exc:
                unreadable.append(str(exc))
        if unreadable:
            log.warning("%d corrections of a session left out, unreadable (e.g. %s)", len(unreadable), unreadable[0])
        return sorted(found, key=lambda pair: (pair[1].utterance_id, pair[0]))


async def scan_corrections(client: aioredis.Redis, sealer: Sealer) -> list[Correction]:
    """Every correction stored on this Redis, oldest first (SCAN: the servers go on meanwhile).

    A value that does not open (sealed under a storage key these settings lack) or does not
    parse is left out, and the sessions it was in are logged at WARNING: the rest still train."""
    found: list[Correction] = []
    unreadable: dict[str, str] = {}
    async for key in client.scan_iter(match=f"{KEY_PREFIX}*{CORRECTIONS}", count=500):
        session_id = key[len(KEY_PREFIX):-len(CORRECTIONS)]
        if not is_session_id(session_id):
            continue
        for raw in (await client.hgetall(key)).values():
            try:
                found.append(_opened(sealer, session_id, raw))
            except (SealError, ValueError, CorrectionError) as exc:  # json.JSONDecodeError is a ValueError
                unreadable[session_id] = str(exc)
    if unreadable:
        log.warning("%d sessions' corrections left out, unreadable (e.g. %s)", len(unreadable),
                    next(iter(unreadable.values())))
    return sorted(found, key=lambda c: (c.at, c.session_id, c.utterance_id))


def _opened(sealer: Sealer, session_id: str, raw: str) -> Correction:
    return Correction.from_dict(json.loads(sealer.unseal(session_id, raw)))


def load_corrections(settings: "Settings") -> list[Correction]:
    """Every stored correction, for a command (`earshot train-intent --with-feedback`): the Redis and
    storage keys the settings name, as `earshot rotate-keys` finds them (the private Redis under
    data_dir is started when no server runs it, and stopped after).

    Raises CommandError when Redis cannot be reached."""
    from earshot.server.cli import CommandError, command_redis_url
    from earshot.server.store import connect

    sealer = Sealer.from_settings(settings)

    async def read(url: str) -> list[Correction]:
        client = connect(url)
        try:
            return await scan_corrections(client, sealer)
        finally:
            await client.aclose()

    with command_redis_url(settings) as url:
        try:
            return asyncio.run(read(url))
        except (OSError, RedisError) as exc:
            raise CommandError(f"cannot read the corrections: Redis at {url}: {exc}") from None


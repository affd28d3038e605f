"""Session state in Redis: the store (a live call writes through server/write_behind.py).

The keys, and the scripts every write goes through, are server/store_keys.py: a
record hash and a `:live` hash (read together, in one round trip, as one
SessionRecord), the finals stream, the report and the summary. How long each
is kept is server/retention.py: an absolute time fixed by the session's
creation, which no write, no end of a call and no DELETE extends.

The live hash holds `interview`, the interviewer's state as JSON
(agents/interview_state.py), so a reconnect resumes the interview.

What people said is sealed before it reaches Redis (server/at_rest.py): the
finals' `event`, the report, the summary, and the `interview` and `pace`
fields (SEALED_FIELDS). The rest (mode, state, clocks, owner) is not.

Using the final's sequence number as its stream ID makes a retried write
idempotent: Redis refuses an ID that is not above the last one, so a final
written twice (the first reply lost in an outage) is stored once.

A write to a session that is gone (purged, erased or expired) writes nothing
and answers False: a purged session is never brought back by a call that was
still writing.

`WriteBehind` (server/write_behind.py) sits between a live session and the
store: the media path never waits on Redis, and while Redis is unreachable
writes wait in memory, in order, and go out when it is back.

`guarded` turns what Redis raises into StoreFull or StoreUnavailable, for this
store and for what shares its connection (server/cluster.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, RedisError

from earshot.server.at_rest import Sealer
from earshot.server.retention import Retention
from earshot.server.store_keys import (
    CREATE_SCRIPT,
    ERASE_SCRIPT,
    KEY_PREFIX,
    PURGE_SCRIPT,
    SESSION_KEYS,
    WRITE_SCRIPT,
    SessionWrite,
    create_arguments,
    owner_key,
    session_key,
)

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[0-9a-f]{16}")  # what `create` makes: 8 random bytes in lowercase hex
SEALED_FIELDS = ("interview", "pace")  # the session hash fields that hold what was said


class StoreUnavailable(RuntimeError):
    """Redis did not answer."""


class StoreFull(StoreUnavailable):
    """Redis refused a write: it is at its maxmemory, and its policy (noeviction) drops nothing to make room."""


def is_session_id(text: str) -> bool:
    """Whether `text` has the form of a session id; nothing else may become part of a key."""
    return SESSION_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    mode: str
    role: str
    difficulty: str
    state: str  # created | live | ended
    created_at: float
    audio_s: float
    next_utterance_id: int
    pace: Optional[dict[str, Any]]
    token_sha256: str
    interview: str = ""  # the interviewer's state, JSON; empty before it starts
    owner: str = ""  # the name of the identity that created it (server/auth.py); empty with auth none
    team: str = ""  # that identity's team
    placed_on: str = ""  # the instance placement picked for its call (server/cluster.py); empty: any
    recording: Optional[dict[str, Any]] = None  # what its calls recorded (server/recording.py); None: nothing

    def public(self) -> dict[str, Any]:
        recorded = {"recording": self.recording} if self.recording else {}
        return {
            **recorded,
            "session_id": self.session_id,
            "mode": self.mode,
            "role": self.role,
            "difficulty": self.difficulty,
            "state": self.state,
            "created_at": self.created_at,
            "audio_s": self.audio_s,
        }


async def guarded(operation: Callable[[], Awaitable[Any]]) -> Any:
    """A Redis operation whose failures become StoreFull (maxmemory) or StoreUnavailable (anything else)."""
    try:
        return await operation()
    except OutOfMemoryError as exc:
        raise StoreFull(f"Redis is full: {exc}") from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc


def new_session_id() -> str:
    return secrets.token_hex(8)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connect(url: str) -> aioredis.Redis:
    # Short timeouts: a dead Redis must fail a write fast, not stall a session.
    return aioredis.Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )


class SessionStore:
    def __init__(self, client: aioredis.Redis, retention: Retention, sealer: Sealer) -> None:
        self._redis = client
        self.retention = retention
        self._sealer = sealer
        self._create_script = client.register_script(CREATE_SCRIPT)
        self._write_script = client.register_script(WRITE_SCRIPT)
        self._purge_script = client.register_script(PURGE_SCRIPT)
        self._erase_script = client.register_script(ERASE_SCRIPT)

    @property
    def sealer(self) -> Sealer:
        """The storage keys, for what else seals what people said: call recordings (server/recording.py),
        corrections (server/feedback_store.py), facts (server/facts_store.py)."""
        return self._sealer

    @property
    def client(self) -> aioredis.Redis:
        """The connection, for what shares it (the audit log, server/audit.py)."""
        return self._redis

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        return await guarded(operation)

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping))

    async def close(self) -> None:
        await self._redis.aclose()

    async def create(
        self, mode: str, role: str, difficulty: str, owner: str = "", team: str = "",
        session_id: Optional[str] = None, placed_on: str = "",
    ) -> tuple[SessionRecord, str]:
        """A new session; its record lives `retention.pending_s` until its call's first write.

        `placed_on`: the instance it was placed on (server/cluster.py), where its offer goes."""
        session_id = session_id or new_session_id()
        token = secrets.token_urlsafe(24)
        created_at = round(time.time(), 3)
        fields = {
            "mode": mode,
            "role": role,
            "difficulty": difficulty,
            "state": "created",
            "created_at": f"{created_at:.3f}",
            "token_sha256": _hash_token(token),
            "owner": owner,
            "team": team,
            "placed_on": placed_on,
        }
        keys, args = create_arguments(session_id, fields, created_at, owner, self.retention)
        await self._call(lambda: self._create_script(keys=keys, args=args))
        return _record(session_id, fields), token

    async def get(self, session_id: str) -> Optional[SessionRecord]:
        if not is_session_id(session_id):
            return None

        async def read() -> list[dict[str, str]]:
            # Not a MULTI: Redis refuses a transaction's every command once it is full, reads included.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(session_key(session_id))
                pipe.hgetall(session_key(session_id, ":live"))
                return await pipe.execute()

        record, live = await self._call(read)
        return _record(session_id, self._unseal_fields(session_id, {**live, **record})) if record else None

    @staticmethod
    def token_matches(record: SessionRecord, token: str) -> bool:
        return hmac.compare_digest(record.token_sha256, _hash_token(token))

    async def _write(self, session_id: str, write: SessionWrite) -> bool:
        keys, args = write.keys(session_id), write.arguments(self.retention)
        return bool(await self._call(lambda: self._write_script(keys=keys, args=args)))

    async def update(self, session_id: str, **fields: Any) -> bool:
        """A call's session fields (state, and the live state: audio clock, pace, interview); False: the session is gone."""
        return await self._write(session_id, SessionWrite(self._seal_fields(session_id, _encode(fields))))

    async def end(self, session_id: str) -> bool:
        """State "ended", as a DELETE sets it: no expiry moves, a pending session stays as short-lived as it was."""
        return await self._write(session_id, SessionWrite({"state": "ended"}, fix_record=False))

    async def append_final(self, session_id: str, seq: int, final: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Store a final and the session fields that go with it (its audio clock), atomically."""
        event = self._sealer.seal(session_id, json.dumps(final))
        return await self._write(session_id, SessionWrite(self._seal_fields(session_id, _encode(fields)), final=(f"{seq}-0", event)))

    async def finals(self, session_id: str) -> list[dict[str, Any]]:
        entries = await self._call(lambda: self._redis.xrange(session_key(session_id, ":finals")))
        return [json.loads(self._sealer.unseal(session_id, entry["event"])) for _id, entry in entries]

    async def save_report(self, session_id: str, report: dict[str, Any]) -> None:
        await self._save_document(session_id, "report", report)

    async def report(self, session_id: str) -> Optional[dict[str, Any]]:
        return await self._document(session_id, "report")

    async def save_summary(self, session_id: str, summary: dict[str, Any]) -> None:
        await self._save_document(session_id, "summary", summary)

    async def summary(self, session_id: str) -> Optional[dict[str, Any]]:
        return await self._document(session_id, "summary")

    async def save_rescored(self, session_id: str, rescored: dict[str, Any]) -> None:
        """A recorded call's transcript from the bigger Whisper (server/rescoring.py), beside the live one."""
        await self._save_document(session_id, "rescored", rescored)

    async def rescored(self, session_id: str) -> Optional[dict[str, Any]]:
        return await self._document(session_id, "rescored")

    async def _save_document(self, session_id: str, kind: str, document: dict[str, Any]) -> None:
        sealed = self._sealer.seal(session_id, json.dumps(document))
        await self._write(session_id, SessionWrite(document=(f":{kind}", sealed)))

    async def _document(self, session_id: str, kind: str) -> Optional[dict[str, Any]]:
        raw = await self._call(lambda: self._redis.get(session_key(session_id, f":{kind}")))
        return json.loads(self._sealer.unseal(session_id, raw)) if raw else None

    async def final_count(self, session_id: str) -> int:
        return int(await self._call(lambda: self._redis.xlen(session_key(session_id, ":finals"))))

    # --- deletion -----------------------------------------------------------------------------
    async def purge(self, record: SessionRecord) -> int:
        """Every key of the session at once, and its place in its owner's index: how many keys went."""
        keys = [owner_key(record.owner)] if record.owner else []
        args = [record.session_id, KEY_PREFIX, *SESSION_KEYS]
        return int(await self._call(lambda: self._purge_script(keys=keys, args=args)))

    async def sessions_of(self, owner: str) -> list[str]:
        """The ids of the sessions `owner` created that its index still lists (some may have expired)."""
        members = await self._call(lambda: self._redis.smembers(owner_key(owner)))
        return sorted(m for m in members if is_session_id(m))

    async def erase(self, owner: str) -> tuple[dict[str, int], int]:
        """Every key of every session `owner` created, and its index, at once.

        Returns the keys deleted per session id, and in all (the index included).
        """
        keys, args = [owner_key(owner)], [KEY_PREFIX, *SESSION_KEYS]
        ids, counts = await self._call(lambda: self._erase_script(keys=keys, args=args))
        per_session = {session_id: int(count) for session_id, count in sorted(zip(ids, counts))}
        return per_session, sum(per_session.values()) + (1 if ids else 0)

    def _seal_fields(self, session_id: str, values: dict[str, str]) -> dict[str, str]:
        return {k: self._sealer.seal(session_id, v) if k in SEALED_FIELDS else v for k, v in values.items()}

    def _unseal_fields(self, session_id: str, values: dict[str, str]) -> dict[str, str]:
        return {k: self._sealer.unseal(session_id, v) if k in SEALED_FIELDS else v for k, v in values.items()}


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in fields.items()}


def _record(session_id: str, fields: dict[str, str]) -> SessionRecord:
    pace = fields.get("pace")
    return SessionRecord(
        session_id=session_id,
        mode=fields.get("mode", ""),
        role=fields.get("role", ""),
        difficulty=fields.get("difficulty", ""),
        state=fields.get("state", "created"),
        created_at=float(fields.get("created_at", 0)),
        audio_s=float(fields.get("audio_s", 0)),
        next_utterance_id=int(fields.get("next_utterance_id", 1)),
        pace=json.loads(pace) if pace else None,
        token_sha256=fields.get("token_sha256", ""),
        interview=fields.get("interview", ""),
        owner=fields.get("owner", ""),
        team=fields.get("team", ""),
        placed_on=fields.get("placed_on", ""),
        recording=json.loads(fields["recording"]) if fields.get("recording") else None,
    )

"""Session state in Redis.

Keys (all expire `session_ttl_s` after the last write; a new session's hash
expires sooner, `pending_session_ttl_s`, until its call's first write):

    earshot:session:{id}          hash: mode, role, difficulty, state, token_sha256,
                                  created_at, audio_s, next_utterance_id, pace (JSON),
                                  owner, team (who created it; empty with auth none)
    earshot:session:{id}:finals   stream: one entry per final, entry ID "{seq}-0",
                                  field "event" = the final event's JSON
    earshot:session:{id}:report   string: the post-interview report's JSON
    earshot:session:{id}:summary  string: an assist call's end-of-call summary JSON

The hash also holds `interview`, the interviewer's state as JSON
(agents/interview_state.py), so a reconnect resumes the interview.

What people said is sealed before it reaches Redis (server/at_rest.py): the
finals' `event`, the report, the summary, and the `interview` and `pace`
fields (SEALED_FIELDS). The rest (mode, state, clocks, owner) is not.

Using the final's sequence number as its stream ID makes a retried write
idempotent: Redis refuses an ID that is not above the last one, so a final
written twice (the first reply lost in an outage) is stored once.

`WriteBehind` sits between a live session and the store: the media path never
waits on Redis, and while Redis is unreachable writes wait in memory, in
order, and go out when it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from earshot.server.at_rest import Sealer
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KEY_PREFIX = "earshot:session:"
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

    def public(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "mode": self.mode,
            "role": self.role,
            "difficulty": self.difficulty,
            "state": self.state,
            "created_at": self.created_at,
            "audio_s": self.audio_s,
        }


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connect(url: str) -> aioredis.Redis:
    # Short timeouts: a dead Redis must fail a write fast, not stall a session.
    return aioredis.Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )


class SessionStore:
    def __init__(self, client: aioredis.Redis, ttl_s: int, sealer: Sealer) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._sealer = sealer

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await operation()
        except OutOfMemoryError as exc:
            raise StoreFull(f"Redis is full: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping))

    async def close(self) -> None:
        await self._redis.aclose()

    async def create(
        self, mode: str, role: str, difficulty: str, owner: str = "", team: str = "", ttl_s: Optional[int] = None
    ) -> tuple[SessionRecord, str]:
        """A new session; its key lives `ttl_s` (default: the store's TTL) until the next write extends it."""
        session_id = secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        fields = {
            "mode": mode,
            "role": role,
            "difficulty": difficulty,
            "state": "created",
            "created_at": f"{time.time():.3f}",
            "audio_s": "0",
            "next_utterance_id": "1",
            "token_sha256": _hash_token(token),
            "owner": owner,
            "team": team,
        }
        key = KEY_PREFIX + session_id

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl_s or self._ttl_s)
                await pipe.execute()

        await self._call(write)
        return _record(session_id, fields), token

    async def get(self, session_id: str) -> Optional[SessionRecord]:
        if not is_session_id(session_id):
            return None
        fields = await self._call(lambda: self._redis.hgetall(KEY_PREFIX + session_id))
        return _record(session_id, self._unseal_fields(session_id, fields)) if fields else None

    @staticmethod
    def token_matches(record: SessionRecord, token: str) -> bool:
        return hmac.compare_digest(record.token_sha256, _hash_token(token))

    async def update(self, session_id: str, **fields: Any) -> None:
        key = KEY_PREFIX + session_id
        values = self._seal_fields(session_id, _encode(fields))

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=values)
                pipe.expire(key, self._ttl_s)
                pipe.expire(key + ":finals", self._ttl_s)
                await pipe.execute()

        await self._call(write)

    async def append_final(self, session_id: str, seq: int, final: dict[str, Any], fields: dict[str, Any]) -> None:
        """Store a final and the session fields that go with it (its audio clock), atomically."""
        key = KEY_PREFIX + session_id
        values = self._seal_fields(session_id, _encode(fields))

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key + ":finals", {"event": self._sealer.seal(session_id, json.dumps(final))}, id=f"{seq}-0")
                if values:
                    pipe.hset(key, mapping=values)
                pipe.expire(key, self._ttl_s)
                pipe.expire(key + ":finals", self._ttl_s)
                results = await pipe.execute(raise_on_error=False)
            added = results[0]
            # An ID not above the last one means an earlier try whose reply was lost already stored it.
            if isinstance(added, ResponseError) and "equal or smaller" not in str(added):
                raise added
            for result in results[1:]:
                if isinstance(result, Exception):
                    raise result

        await self._call(write)

    async def finals(self, session_id: str) -> list[dict[str, Any]]:
        entries = await self._call(lambda: self._redis.xrange(KEY_PREFIX + session_id + ":finals"))
        return [json.loads(self._sealer.unseal(session_id, entry["event"])) for _id, entry in entries]

    async def save_report(self, session_id: str, report: dict[str, Any]) -> None:
        await self._save_document(session_id, "report", report)

    async def report(self, session_id: str) -> Optional[dict[str, Any]]:
        return await self._document(session_id, "report")

    async def save_summary(self, session_id: str, summary: dict[str, Any]) -> None:
        await self._save_document(session_id, "summary", summary)

    async def summary(self, session_id: str) -> Optional[dict[str, Any]]:
        return await self._document(session_id, "summary")

    async def _save_document(self, session_id: str, kind: str, document: dict[str, Any]) -> None:
        key = f"{KEY_PREFIX}{session_id}:{kind}"
        sealed = self._sealer.seal(session_id, json.dumps(document))
        await self._call(lambda: self._redis.set(key, sealed, ex=self._ttl_s))

    async def _document(self, session_id: str, kind: str) -> Optional[dict[str, Any]]:
        raw = await self._call(lambda: self._redis.get(f"{KEY_PREFIX}{session_id}:{kind}"))
        return json.loads(self._sealer.unseal(session_id, raw)) if raw else None

    async def final_count(self, session_id: str) -> int:
        return int(await self._call(lambda: self._redis.xlen(KEY_PREFIX + session_id + ":finals")))

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
    )


class WriteBehind:
    """Ordered, retried writes for one live session.

    Finals are queued in order and never dropped. Session fields (progress,
    pace, state) are coalesced: only the newest value of each is written.
    `on_outage(True/False)` is called when Redis goes away and comes back, so
    the session can tell its client.
    """

    RETRY_S = 0.5

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        on_outage: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._on_outage = on_outage
        self._finals: deque[tuple[int, dict[str, Any], dict[str, Any]]] = deque()
        self._fields: dict[str, Any] = {}
        self._wake = asyncio.Event()
        self._in_outage = False
        self._task: Optional[asyncio.Task] = None

    @property
    def pending(self) -> int:
        return len(self._finals) + (1 if self._fields else 0)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def final(self, seq: int, event: dict[str, Any], fields: dict[str, Any]) -> None:
        self._finals.append((seq, event, fields))
        self._wake.set()

    async def final_write_through(
        self, seq: int, event: dict[str, Any], fields: dict[str, Any], timeout_s: float = 0.25
    ) -> None:
        """Store a final (with `fields`, e.g. the audio clock) before the client sees it.

        So a crash right after cannot lose it. If Redis is slow or away, or
        earlier finals still wait, the final joins the queue instead: order is
        kept and the caller is not held up.
        """
        if self._finals or self._in_outage:
            self.final(seq, event, fields)
            return
        try:
            await asyncio.wait_for(self._store.append_final(self._session_id, seq, event, fields), timeout_s)
        except (StoreUnavailable, asyncio.TimeoutError):
            self.final(seq, event, fields)  # a write cut off by the timeout may have landed: XADD by seq is idempotent

    def fields(self, **values: Any) -> None:
        self._fields.update(values)
        self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Try to write everything pending; False if Redis stayed away for timeout_s."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        return not self.pending

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_pending()
            except StoreUnavailable as exc:
                if not self._in_outage:
                    self._in_outage = True
                    log.warning("session %s: %s; holding %d writes", self._session_id, exc, self.pending)
                    await self._on_outage(True)
                await asyncio.sleep(self.RETRY_S)
                self._wake.set()
                continue
            if self._in_outage:
                self._in_outage = False
                log.info("session %s: Redis is back; pending writes saved", self._session_id)
                await self._on_outage(False)

    async def _write_pending(self) -> None:
        while self._finals:
            seq, event, fields = self._finals[0]
            await self._store.append_final(self._session_id, seq, event, fields)
            self._finals.popleft()
        if self._fields:
            values = dict(self._fields)
            await self._store.update(self._session_id, **values)
            for key, value in values.items():
                if self._fields.get(key) is value:
                    del self._fields[key]

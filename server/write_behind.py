"""A live session's writes to Redis: finals in order and never dropped, session fields coalesced.

The call's outbox writes each final through (server/outbox.py) and falls back to
this queue when Redis is slow or away; the call's progress, pace and state are
written behind, newest value only. It is the one writer of a live session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable, Callable, Optional

from earshot.server.store import SessionStore, StoreUnavailable
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class WriteBehind:
    """Ordered, retried writes for one live session.

    Finals are queued in order and never dropped. Session fields (progress,
    pace, state) are coalesced: only the newest value of each is written.
    `on_outage(True/False)` is called when Redis goes away and comes back, so
    the session can tell its client. Once the session is gone from Redis
    (purged or expired) its writes are done with: the store writes nothing.
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
        self._gone = False
        self._task: Optional[asyncio.Task] = None

    @property
    def session_id(self) -> str:
        return self._session_id

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
            self._stored(await asyncio.wait_for(self._store.append_final(self._session_id, seq, event, fields), timeout_s))
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
            self._stored(await self._store.append_final(self._session_id, seq, event, fields))
            self._finals.popleft()
        if self._fields:
            values = dict(self._fields)
            self._stored(await self._store.update(self._session_id, **values))
            for key, value in values.items():
                if self._fields.get(key) is value:
                    del self._fields[key]

    def _stored(self, stored: bool) -> None:
        if not stored and not self._gone:
            self._gone = True
            log.info("session %s is gone from Redis (purged or expired): its writes are dropped", self._session_id)

"""`AnalyticsWorker`: one consumer of the ended-calls stream, turning each call into its stored facts.

    fetch a batch (abandoned messages first) --> for each message:
        read the message            malformed                      -> dead-letter, with the reason
        read the session            gone (erased, expired)         -> acknowledged, nothing to store
        read its summary / finals   none (the call never started)  -> acknowledged, nothing to store
                                    not a summary, or unreadable   -> dead-letter, with the reason
        re-score a recording        (when a re-scorer is given and the call was recorded)
        compute the facts           agents/call_facts.py, in a thread (the encoder judges used suggestions)
        write them once             server/facts_store.py: the totals move with them, once
        acknowledge
    anything else failing (Redis away, a re-scoring that broke) leaves the message unacknowledged:
    after `analytics_claim_idle_s` this worker or another takes it again, and after
    `analytics_max_tries` deliveries it is dead-lettered with its last error.

A worker that crashes mid-message is the same case as a failure: its message stays pending
and another takes it after the idle time. If it crashed after writing and before the
acknowledgement, the second write finds the facts there and adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from earshot.agents.call_facts import CallFacts, CallMeta, FactsError, Scoring, Similarity, facts_from_finals, facts_from_summary
from earshot.server.analytics_metrics import increments
from earshot.server.analytics_stream import CallEnded, CallStream, Delivery, MalformedMessage
from earshot.server.at_rest import SealError
from earshot.server.facts_store import FactsStore
from earshot.server.store import SessionRecord, SessionStore, StoreUnavailable

log = logging.getLogger(__name__)

Rescore = Callable[[SessionRecord], Awaitable[Optional[Scoring]]]  # None: the call was not recorded


class NothingToStore(Exception):
    """The call left nothing to compute facts from (why): acknowledged, not dead-lettered."""


@dataclass
class WorkerCounts:
    stored: int = 0  # facts written
    repeated: int = 0  # a message whose facts were already there (handled before, not acknowledged)
    skipped: int = 0  # nothing to store
    failed: int = 0  # left for a retry
    dead: int = 0  # dead-lettered


class AnalyticsWorker:
    def __init__(
        self,
        stream: CallStream,
        sessions: SessionStore,
        facts: FactsStore,
        similarity: Similarity,
        used_similarity: float,
        max_tries: int,
        rescore: Optional[Rescore] = None,
    ) -> None:
        self._stream = stream
        self._sessions = sessions
        self._facts = facts
        self._similarity = similarity
        self._used_similarity = used_similarity
        self._max_tries = max_tries
        self._rescore = rescore
        self.counts = WorkerCounts()

    async def run(self, stop: asyncio.Event, batch: int = 10, block_ms: int = 1000, until_idle: bool = False) -> None:
        """Handle messages until `stop` is set (or, with until_idle, until a fetch finds none)."""
        while not stop.is_set():
            try:
                deliveries = await self._stream.fetch(batch, block_ms)
            except (StoreUnavailable, OSError, ConnectionError) as exc:
                log.warning("analytics: cannot read the stream (%s); trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if not deliveries and until_idle:
                return
            for delivery in deliveries:
                await self.handle(delivery)

    async def handle(self, delivery: Delivery) -> None:
        try:
            facts = await self._facts_of(CallEnded.from_fields(delivery.fields))
        except (MalformedMessage, FactsError, SealError) as exc:
            await self._stream.dead_letter(delivery, f"{type(exc).__name__}: {exc}")
            self.counts.dead += 1
            return
        except NothingToStore as exc:
            log.info("analytics: message %s: nothing to store (%s)", delivery.message_id, exc)
            await self._stream.ack(delivery)
            self.counts.skipped += 1
            return
        except Exception as exc:  # noqa: BLE001 - anything else is worth another try, and a dead letter after N
            await self._failed(delivery, exc)
            return
        try:
            document = facts.to_dict()
            written = await self._facts.write_once(document, increments(document))
            await self._stream.ack(delivery)
        except Exception as exc:  # noqa: BLE001
            await self._failed(delivery, exc)
            return
        if written == 1:
            self.counts.stored += 1
        elif written == 0:
            self.counts.repeated += 1
        else:
            self.counts.skipped += 1  # erased between the read and the write

    async def _failed(self, delivery: Delivery, exc: BaseException) -> None:
        if delivery.tries >= self._max_tries:
            try:
                await self._stream.dead_letter(delivery, f"failed {delivery.tries} times; last: {exc!r}")
                self.counts.dead += 1
                return
            except Exception as dead_exc:  # noqa: BLE001 - Redis is away: it stays pending, tried again later
                exc = dead_exc
        log.warning("analytics: message %s failed (try %d), left for a retry: %r", delivery.message_id, delivery.tries, exc)
        self.counts.failed += 1

    async def _facts_of(self, ended: CallEnded) -> CallFacts:
        record = await self._sessions.get(ended.session_id)
        if record is None:
            raise NothingToStore("the session is gone (erased or expired)")
        meta = CallMeta(ended.session_id, ended.mode, record.owner, record.team, record.created_at, ended.ended_at)
        if ended.mode == "interview":
            finals = await self._sessions.finals(ended.session_id)
            if not finals and record.audio_s <= 0:
                raise NothingToStore("the interview never started")
            rescored = await self._rescore(record) if self._rescore is not None else None
            return facts_from_finals(meta, finals, record.audio_s, rescored)
        summary = await self._sessions.summary(ended.session_id)
        if summary is None:
            raise NothingToStore("the call never started")
        rescored = await self._rescore(record) if self._rescore is not None else None
        return await asyncio.to_thread(
            facts_from_summary, meta, summary, self._similarity, self._used_similarity, rescored
        )

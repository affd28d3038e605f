"""The one door every event of a call leaves by.

    publish(event) --> persist (when durable) --> send on the data channel --> observe (metrics) --> the call's mode

Pipeline events, the call mode's own events (the interviewer's words, assist
updates) and the server's notices (`no_media`, `store_unavailable`) all go
through `publish`, so every event is stored, sent and counted the same way.

`publish` never blocks: events queue in the order they were published and one
task delivers them. A final is written to Redis before anything after it is
sent (write-through, bounded by WriteBehind's timeout; during an outage it
waits in memory, in order), so a caller never sees a final the store could
lose. The mode hears each event after the caller was sent it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable, Optional, Protocol

from aiortc import RTCDataChannel

from earshot.server import protocol
from earshot.server.write_behind import WriteBehind
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SCTP_SEND_S = 0.1  # loopback and LAN round trips are far shorter; a notice is one small packet
MAX_BUFFERED_MESSAGES = 1000  # held until the data channel opens; the oldest go first past this


class EventListener(Protocol):
    def on_event(self, event: protocol.Event) -> None: ...


class EventChannel:
    """The `events` data channel, and what waits for it to open."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self._channel: Optional[RTCDataChannel] = None
        self._backlog: deque[str] = deque(maxlen=MAX_BUFFERED_MESSAGES)

    def open(self, channel: RTCDataChannel, first: protocol.Event) -> None:
        """The caller's channel is here: `first` goes out, then everything that waited, in order."""
        self._channel = channel
        self._send_now(first.to_json())
        while self._backlog:
            self._send_now(self._backlog.popleft())

    def send(self, message: str) -> None:
        if self._channel is None or self._channel.readyState != "open":
            self._backlog.append(message)
            return
        self._send_now(message)

    async def flushed(self, timeout_s: float) -> None:
        """Until what was sent has left the data channel's buffer (at most timeout_s): closing the
        connection drops what is still queued. The SCTP layer then sends it within a round trip."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._channel is not None and self._channel.readyState == "open" and asyncio.get_running_loop().time() < deadline:
            if self._channel.bufferedAmount == 0:
                await asyncio.sleep(SCTP_SEND_S)
                return
            await asyncio.sleep(0.01)

    def _send_now(self, message: str) -> None:
        try:
            self._channel.send(message)  # type: ignore[union-attr]
        except Exception as exc:  # the channel is closing under us: what mattered is in Redis
            log.debug("session %s: send failed: %s", self._session_id, exc)


class Outbox:
    def __init__(
        self,
        writer: WriteBehind,
        channel: EventChannel,
        observe: Callable[[protocol.Event], None],
        progress: Callable[[], dict[str, Any]],
    ) -> None:
        self._writer = writer
        self._channel = channel
        self._observe = observe
        self._progress = progress  # where a reconnect would resume: stored with each final
        self._listener: Optional[EventListener] = None
        self._queue: deque[protocol.Event] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: Optional[asyncio.Task] = None

    def deliver_to(self, listener: EventListener) -> None:
        """The call's mode: it hears every event last. Set once; it publishes through this outbox too."""
        self._listener = listener

    def publish(self, event: protocol.Event) -> None:
        self._queue.append(event)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def drain(self) -> None:
        """Until every event published so far has been delivered."""
        await self._idle.wait()

    async def close(self) -> None:
        await self.drain()
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            event = self._queue.popleft()
            await self._persist(event)
            self._channel.send(event.to_json())
            self._hand_on(self._observe, event)
            if self._listener is not None:
                self._hand_on(self._listener.on_event, event)

    async def _persist(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Final):
            await self._writer.final_write_through(event.seq, event.stored(), self._progress())
        elif isinstance(event, protocol.Pace) and event.final:
            self._writer.fields(pace=event.to_dict())

    @staticmethod
    def _hand_on(receiver: Callable[[protocol.Event], None], event: protocol.Event) -> None:
        try:
            receiver(event)
        except Exception:  # a metrics or mode bug must not stop the call's events
            log.exception("%r failed on a %s event", receiver, event.type)

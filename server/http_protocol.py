"""uvicorn's HTTP/1.1 protocol with a header read timeout: a connection whose request head does not arrive in time is closed.

uvicorn has no such setting: its keep-alive timer is cancelled by every byte
that arrives, so a client that sends one header line every few seconds
(slowloris) holds a connection, and its memory, for as long as it likes. Here
a timer starts when the connection is made, and again after each response on
a kept-alive connection; it is cancelled once h11 has parsed a whole request
head (uvicorn then starts a new request cycle), and if it fires first the
transport is closed. After a response sent before its request's body was all
read (a 408, a 413), the rest of that body and the next head are due within
the same time. The body has its own limit while the app reads it
(settings.body_timeout_s, server/request_checks.py read_json).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: Optional[asyncio.TimerHandle] = None
        super().connection_made(transport)
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        waiting_in = self.cycle
        super().data_received(data)
        if self.cycle is not waiting_in:  # a whole request head was parsed: a new cycle began
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive and not already serving the next (pipelined) request: its head is due in time too.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._wait_for_head()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        log.debug("closing a connection from %s: no request head within %.1f s", self.client, self.header_timeout_s)
        self.transport.close()


def with_header_timeout(timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to hand uvicorn.Config(http=...), which builds each connection's protocol from it."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": timeout_s})

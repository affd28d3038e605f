"""SIGTERM drains before the server stops, as Kubernetes expects of a pod it is taking away.

    SIGTERM  -> ready goes false at once (/healthz/ready 503 "draining"; placement passes this
                instance over), live calls go on for up to drain_grace_s, the rest are closed with
                a `server_draining` notice (their callers reconnect, and the session resumes on
                another instance), then uvicorn's own graceful stop
    SIGINT, or a second SIGTERM -> uvicorn's stop at once (calls still end cleanly: lifespan)
    SIGHUP   -> `on_hangup` (the intent heads are loaded again: server/intent_reload.py); nothing stops.
                Before the server serves (while the models load), SIGHUP still ends the process

HTTP keeps being served while draining: the probes see "draining", a caller's
GET, DELETE or report still works, and a session created here is placed on an
instance that is ready. Set drain_grace_s below the pod's
terminationGracePeriodSeconds, so the calls are closed with their notice
before Kubernetes sends SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING, Awaitable, Callable, Optional

import uvicorn

if TYPE_CHECKING:
    from earshot.server.api import AppState

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]],
        on_hangup: Optional[Callable[[], Awaitable[None]]] = None,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._on_hangup = on_hangup
        self._hangups: set[asyncio.Task] = set()  # reloads in flight (a task must be held until done)
        self._draining = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    async def serve(self, sockets: Optional[list] = None) -> None:
        self._loop = asyncio.get_running_loop()
        if self._on_hangup is not None:
            self._loop.add_signal_handler(signal.SIGHUP, self._hung_up)
        try:
            await super().serve(sockets)
        finally:
            if self._on_hangup is not None:
                self._loop.remove_signal_handler(signal.SIGHUP)

    def _hung_up(self) -> None:
        assert self._on_hangup is not None
        log.info("SIGHUP: loading the intent heads again")
        task = asyncio.ensure_future(self._on_hangup())
        self._hangups.add(task)
        task.add_done_callback(self._hangups.discard)

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        if sig == signal.SIGTERM and not self._draining and self._loop is not None:
            self._draining = True
            self._loop.call_soon_threadsafe(self._start_draining)
            return
        super().handle_exit(sig, frame)

    def _start_draining(self) -> None:
        async def drain_then_stop() -> None:
            try:
                await self._drain()
            finally:
                self.should_exit = True

        self._task = asyncio.ensure_future(drain_then_stop())


async def drain(state: "AppState") -> None:
    """No new sessions from now on; live calls go on for up to drain_grace_s, then are closed with
    a `server_draining` notice."""
    state.cluster.drain()
    log.info("SIGTERM: draining: ready is false; %d live calls may go on for up to %g s",
             len(state.calls), state.settings.drain_grace_s)
    closed = await state.calls.drain(state.settings.drain_grace_s)
    log.info("drained: %d calls closed with server_draining", closed)

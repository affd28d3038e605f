"""The calls one server process holds live, and the Redis writers that outlive theirs."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Awaitable, Iterator, Optional

from earshot.server.write_behind import WriteBehind
from earshot.server.webrtc import LiveSession

DRAIN_AT_SHUTDOWN_S = 2.0


class LiveCalls:
    def __init__(self) -> None:
        self._live: dict[str, LiveSession] = {}
        self._draining: set[WriteBehind] = set()  # writes of ended calls still waiting for Redis
        self._offering: set[str] = set()  # sessions whose offer is being answered
        self._ending: set[str] = set()  # sessions a DELETE is ending (until Redis says so)
        self._chores: set[asyncio.Task] = set()  # small Redis writes after a call (kept, so none is collected mid-way)

    def __len__(self) -> int:
        return len(self._live)

    @property
    def busy(self) -> int:
        """Calls held or being set up: what admission control counts."""
        return len(self._live.keys() | self._offering)

    def offer_in_progress(self, session_id: str) -> bool:
        return session_id in self._offering

    @contextmanager
    def offering(self, session_id: str) -> Iterator[None]:
        """Hold the session while its offer is answered: checked and taken with no await in between,
        so of simultaneous offers to one session one goes ahead and the others see it taken."""
        self._offering.add(session_id)
        try:
            yield
        finally:
            self._offering.discard(session_id)

    def is_ending(self, session_id: str) -> bool:
        return session_id in self._ending

    @contextmanager
    def ending(self, session_id: str) -> Iterator[None]:
        """Hold the session while a DELETE ends it: an offer that comes in meanwhile must not revive it.
        With `offering`, whichever of the two takes the session first wins, and the other gets a 409."""
        self._ending.add(session_id)
        try:
            yield
        finally:
            self._ending.discard(session_id)

    def held(self) -> list[str]:
        """The sessions whose calls this process holds: live or closing ones, and ended ones whose writes wait."""
        return list(self._live.keys() | {writer.session_id for writer in self._draining})

    def spawn(self, chore: Awaitable[None]) -> None:
        task = asyncio.ensure_future(chore)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def get(self, session_id: str) -> Optional[LiveSession]:
        """The session's call, if this process holds one (it may be closing: see `LiveSession.closed`)."""
        return self._live.get(session_id)

    def is_live(self, session_id: str) -> bool:
        call = self._live.get(session_id)
        return call is not None and not call.closed

    def add(self, call: LiveSession) -> None:
        self._live[call.session_id] = call

    def closed(self, call: LiveSession) -> None:
        """A call's teardown is done (LiveSession's on_closed)."""
        if self._live.get(call.session_id) is call:
            del self._live[call.session_id]
        if call.writer.pending:
            self._draining.add(call.writer)  # keep retrying after the call ended
        self._draining = {w for w in self._draining if w.pending}

    async def drain(self, grace_s: float, poll_s: float = 0.5) -> int:
        """Let the live calls end by themselves for up to grace_s; then close the rest with a notice
        (server_draining) that tells their callers to reconnect. Returns how many were closed so."""
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._live and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(poll_s)
        left = list(self._live.values())
        message = "this server is shutting down; reconnect to go on with the same session"
        await asyncio.gather(*(call.close_with_notice("server_draining", message) for call in left))
        return len(left)

    async def close_all(self) -> None:
        await asyncio.gather(*(call.close("server shutting down") for call in list(self._live.values())))
        for writer in list(self._draining):
            await writer.flush(DRAIN_AT_SHUTDOWN_S)
            await writer.stop()

"""The transcribe mode: the caller's transcript and pace, and no agent (dictation, pipeline tests, load tests)."""

from __future__ import annotations

from typing import Optional

from aiortc import MediaStreamTrack

from earshot.server import protocol
from earshot.server.modes.base import CallContext


class TranscribeMode:
    outbound_track: Optional[MediaStreamTrack] = None

    def start(self) -> None:
        pass

    def on_event(self, event: protocol.Event) -> None:
        pass

    async def close(self) -> None:
        pass


class TranscribeServices:
    def open(self, context: CallContext) -> TranscribeMode:
        return TranscribeMode()

    async def warm(self) -> None:
        pass

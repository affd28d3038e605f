"""What every call mode is: one object per call behind one small interface.

A `LiveSession` (server/webrtc.py) opens its mode once, when the call is set
up, and then:

    start()          the caller's data channel is open: it can see (and hear) the mode now
    on_event(event)  every event the call publishes, after it was stored and sent; returns at once
    outbound_track   audio for the caller (the interviewer's voice), or None
    close()          the call is over and its last finals are out: stop, store what outlives the call

What every call of a mode shares (a question bank, a knowledge file, the LLM)
is its `ModeServices`, loaded once at start; `open` makes one call's mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from aiortc import MediaStreamTrack

from earshot.server import protocol
from earshot.server.store import SessionRecord


@dataclass(frozen=True)
class CallContext:
    """What a mode gets from its call."""

    record: SessionRecord
    publish: Callable[[protocol.Event], None]  # the call's outbox (server/outbox.py)
    audio_clock: Callable[[], float]  # the call's audio clock, seconds
    save_fields: Callable[..., None]  # session fields, written behind to Redis
    intents_follow_finals: bool  # an `intent` (or an `intent_failed` error) follows every final

    @property
    def session_id(self) -> str:
        return self.record.session_id

    def now(self) -> float:
        return round(self.audio_clock(), 3)


class CallMode(Protocol):
    outbound_track: Optional[MediaStreamTrack]

    def start(self) -> None: ...

    def on_event(self, event: protocol.Event) -> None: ...

    async def close(self) -> None: ...


class ModeServices(Protocol):
    def open(self, context: CallContext) -> CallMode: ...

    async def warm(self) -> None:
        """Before the first call: synthesise common phrases, embed files, fill caches."""


@dataclass(frozen=True)
class ModeKind:
    """The fixed facts of a mode: what a session of it is created with and classified by."""

    name: str
    needs_role: bool  # sessions name an interview role
    speakers: tuple[str, ...] = ()  # labelled inbound tracks; () = one track, one speaker
    intent_label_set: Optional[str] = None  # None: utterances are not classified
    # With endpointing model: a pause the model calls unfinished stays open up to the fallback silence
    # (no cut, no turn taken). False: the model only ends utterances sooner; the silence rule still caps a pause.
    hold_unfinished_turns: bool = True

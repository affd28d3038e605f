"""What the interviewer hears from the candidate, and the queue it arrives in.

The audio pipeline's events are turned into these small records. They go
through an `Inbox` rather than an `asyncio.Queue` because the interviewer often
waits for "the next thing the candidate does, or my own speech ending, or a
timeout" at once, and must be able to put back what it read too early
(speech that began while it was talking is the start of the next answer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Optional, Union


@dataclass(frozen=True)
class HeardVoice:
    """A voice may be starting (60 ms of it); a HeardSpeechStart follows if it is speech."""

    at_s: float


@dataclass(frozen=True)
class HeardSpeechStart:
    utterance_id: int


@dataclass(frozen=True)
class HeardPartial:
    utterance_id: int
    text: str


@dataclass(frozen=True)
class HeardSpeechEnd:
    utterance_id: int
    dropped: bool  # too little voice to be speech: no final follows
    ended_by: str = "silence"  # why the utterance ended (server/protocol.py ENDED_BY)
    turn_complete: bool = False  # the end-of-turn model (or its fallback silence) says the candidate is done


@dataclass(frozen=True)
class HeardNoFinal:
    """An utterance that ended brought no words (noise, a cough) or its transcription failed: no final follows."""

    utterance_id: int


@dataclass(frozen=True)
class HeardFinal:
    seq: int
    utterance_id: int
    text: str
    intents: tuple[str, ...] = ()  # the intent head's labels for it (interview set), best first


Heard = Union[HeardSpeechStart, HeardPartial, HeardSpeechEnd, HeardNoFinal, HeardFinal]


class Inbox:
    def __init__(self) -> None:
        self._items: deque[Heard] = deque()
        self._arrived = asyncio.Event()

    def put(self, item: Heard) -> None:
        self._items.append(item)
        self._arrived.set()

    def put_back(self, items: Iterable[Heard]) -> None:
        """Return items to the front, in their original order."""
        self._items.extendleft(reversed(list(items)))
        if self._items:
            self._arrived.set()

    def clear(self) -> None:
        self._items.clear()

    async def get(self, timeout: Optional[float] = None, until: Optional[asyncio.Future] = None) -> Optional[Heard]:
        """The next item; None when `timeout` passes or `until` completes first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._items:
            if until is not None and until.done():
                return None
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            self._arrived.clear()
            waiters = [asyncio.ensure_future(self._arrived.wait())]
            if until is not None:
                waiters.append(until)  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if not waiters[0].done():
                waiters[0].cancel()
        return self._items.popleft()

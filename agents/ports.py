"""What the interviewer needs from the rest of the server, as small protocols.

The interviewer decides what to say and when; it does not know about WebRTC,
TTS engines, Redis or JSON events. The server gives it a `Voice` (text in,
audio out to the caller, with barge-in controls) and an `InterviewOutput`
(events and persistence), so the flow can be read, and tested, on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterable, Callable, Iterable, Protocol, Union

from earshot.agents.interview_state import InterviewState

Sentences = Union[Iterable[str], AsyncIterable[str]]


@dataclass(frozen=True)
class SpeechResult:
    interrupted: bool
    played_s: float  # audio of this utterance that went out
    spoken_text: str  # sentences at least partly played
    text: str  # every sentence released for this utterance


class PreparedSpeech(Protocol):
    """Sentences being synthesised ahead of time; playing them is a separate step."""

    def cancel(self) -> None: ...


class Voice(Protocol):
    def prepare(self, sentences: Sentences) -> PreparedSpeech:
        """Start turning sentences into audio now, before it is the agent's turn to speak."""

    async def play(
        self, utterance_id: int, speech: PreparedSpeech, on_sentence: Callable[[str], None]
    ) -> SpeechResult:
        """Speak prepared sentences in order; `on_sentence` fires as each one is released.

        Returns when the last sentence has been heard, or at once after `stop()`.
        """

    def pause(self) -> None:
        """Silence from the next audio frame on, keeping the place (the candidate may only say "yeah")."""

    def resume(self) -> None: ...

    def stop(self) -> None:
        """Drop the rest of what is being said; `play` returns with interrupted=True."""

    @property
    def speaking(self) -> bool: ...


class InterviewOutput(Protocol):
    def agent_text(self, utterance_id: int, delta: str, final: bool, kind: str, interrupted: bool = False) -> None: ...

    def turn(self, state: str, question_index: int) -> None: ...

    def question(self, index: int, total: int, text: str, question_id: str, follow_up: bool) -> None: ...

    def error(self, code: str, message: str) -> None: ...

    def save(self, state: InterviewState) -> None:
        """Persist the state (write-behind: must not block)."""

    async def finished(self, state: InterviewState) -> None:
        """The interview ended: build and store the report."""


"""The live updates of the agent-assist overlay: one frozen dataclass per kind.

The server sends each as `{"type": kind, "session_id": ..., **dataclasses.asdict(update)}`,
so the field names here are the wire format. Fields hold plain dicts, lists,
strings and numbers, ready for JSON; floats are rounded to 3 decimals by
whoever builds the update (`r3`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

SPEAKERS = ("agent", "customer")


def r3(value: float) -> float:
    return round(float(value), 3)


@dataclass(frozen=True)
class SentimentUpdate:
    """The customer's sentiment after one of their finals, and where it is heading."""

    kind: ClassVar[str] = "sentiment"
    speaker: str
    utterance_id: int
    score: float  # VADER compound, -1 (very negative) .. 1 (very positive)
    label: str  # negative | neutral | positive
    trend: float  # -1 .. 1: the change over the last `history` scores (see agents/sentiment.py)
    trend_label: str  # worsening | steady | improving
    history: list[float]  # the last N scores, oldest first


@dataclass(frozen=True)
class TopicUpdate:
    """What the call is about; sent when the topic is first named and when it changes."""

    kind: ClassVar[str] = "topic"
    topic: str  # the topic's name in the topic file
    label: str  # its display label
    score: float  # cosine similarity of the recent talk to the topic
    source: str  # embedding | llm
    candidates: list[dict[str, Any]]  # the top 3 by embedding: {"name", "score"}


@dataclass(frozen=True)
class SuggestionUpdate:
    """A reply the agent could say next, for one customer final.

    First from the best knowledge entry (at once), then, when an LLM is set,
    its grounded rewording or the knowledge answer again as the fallback with
    `final` true.
    """

    kind: ClassVar[str] = "suggestion"
    utterance_id: int  # the customer's utterance this answers
    text: str
    source: str  # knowledge | llm
    knowledge_ids: list[str]  # the entries it is grounded on, best first
    score: float  # the best entry's match to the customer's words (cosine); low means a guess
    final: bool  # false while an LLM may still replace it
    latency_s: float  # from the final reaching the agent to this update (monotonic clock)


@dataclass(frozen=True)
class CallMetricsUpdate:
    """Talk time, silence, rates and interruptions so far (see agents/call_metrics.py)."""

    kind: ClassVar[str] = "call_metrics"
    call_s: float
    talk_s: dict[str, float]  # per speaker
    talk_share: dict[str, float]  # per speaker; the two add up to 1 once anyone spoke
    speech_s: float  # time anyone was speaking
    silence_s: float  # call_s - speech_s
    speech_to_silence: Optional[float]  # speech_s / silence_s; None while there has been no silence
    talk_rate_wps: dict[str, float]  # per speaker: words of finals / their duration
    interruptions: dict[str, int]  # per speaker: times that speaker cut in
    overlap_s: float  # time both were speaking
    long_silences: int
    longest_silence_s: float


AssistUpdate = Union[SentimentUpdate, TopicUpdate, SuggestionUpdate, CallMetricsUpdate]

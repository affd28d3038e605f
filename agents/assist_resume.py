"""Where a resumed assist call starts from: the summary its earlier connection stored.

A call whose connection drops (or whose server drains or dies) resumes on a
new connection, on any instance. Its audio clock, utterance ids and final
numbers already go on from where they stopped (server/pipeline.py
`ResumePoint`); the assist agent's own state, what its summary is built from,
lived in the old process. So the new connection reads the summary the old one
stored (at its close, or its last 5 s checkpoint, server/modes/assist.py) and
the agent starts from that: the lines, each side's speech spans (talk shares,
silences, interruptions), the sentiment scores, the topic and its history,
and the suggestions shown. Without it a resumed call's summary, and so its
stored facts, would cover only the part after the resume.

    stored summary --EarlierPart.from_summary--> EarlierPart --AssistAgent.resume_from--> the agent

What is not carried: an utterance that was still open when the summary was
stored, and for a killed instance, whatever it heard after its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

from earshot.server.protocol import SPEAKERS, TopicUpdate, r3


class ResumeError(ValueError):
    """A stored summary that cannot be resumed from (what is missing or wrong)."""


@dataclass(frozen=True)
class CallLine:
    """One final of an assist call, as its agent keeps it and its summary lists it."""

    seq: int
    speaker: str
    utterance_id: int
    text: str
    start: float
    end: float
    intents: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "speaker": self.speaker,
            "utterance_id": self.utterance_id,
            "text": self.text,
            "start": r3(self.start),
            "end": r3(self.end),
            "intents": [{"name": name, "score": r3(score)} for name, score in self.intents],
        }


@dataclass(frozen=True)
class EarlierPart:
    """The part of a call before its resume, as its stored summary has it."""

    started_at: float  # wall clock, when the call's first connection started
    lines: tuple[CallLine, ...]  # by seq
    spans: dict[str, tuple[tuple[float, float], ...]]  # each side's ended utterances on the audio clock
    sentiments: tuple[dict[str, Any], ...]  # the customer's scored finals, as the summary lists them
    suggestions: tuple[dict[str, Any], ...]
    topic: Optional[TopicUpdate]
    topic_history: tuple[dict[str, Any], ...]

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "EarlierPart":
        try:
            lines = tuple(
                sorted((_line(line) for line in summary["transcript"]), key=lambda line: line.seq)
            )
            # A summary from before spans were stored: each final's own interval.
            stored_spans = summary.get("speech_spans") or {
                speaker: [(line.start, line.end) for line in lines if line.speaker == speaker] for speaker in SPEAKERS
            }
            spans = {
                speaker: tuple((float(start), float(end)) for start, end in stored_spans.get(speaker, ()))
                for speaker in SPEAKERS
            }
            return cls(
                started_at=float(summary["started_at"]),
                lines=lines,
                spans=spans,
                sentiments=tuple(dict(s) for s in summary["sentiment"]["scores"]),
                suggestions=tuple(dict(s) for s in summary.get("suggestions") or ()),
                topic=_topic(summary.get("topic")),
                topic_history=tuple(dict(t) for t in summary.get("topic_history") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResumeError(f"not an assist call summary: {type(exc).__name__}: {exc}") from None


def _line(line: Mapping[str, Any]) -> CallLine:
    speaker = str(line["speaker"])
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker {speaker!r}")
    return CallLine(
        seq=int(line["seq"]),
        speaker=speaker,
        utterance_id=int(line["utterance_id"]),
        text=str(line["text"]),
        start=float(line["start"]),
        end=float(line["end"]),
        intents=tuple((str(i["name"]), float(i["score"])) for i in line.get("intents") or ()),
    )


def _topic(stored: Optional[Mapping[str, Any]]) -> Optional[TopicUpdate]:
    if stored is None:
        return None
    names = {f.name for f in fields(TopicUpdate)}
    return TopicUpdate(**{name: stored[name] for name in names if name in stored})

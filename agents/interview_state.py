"""The interview's state: small, JSON-serialisable, held in Redis.

Everything the interviewer needs to pick up after a reconnect lives here: the
planned questions, where it is, what each answer was (as final sequence
numbers; the finals themselves are in the session's finals stream), and what
it said. The interviewer saves it at every transition, so a dropped call
resumes at the question it was on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# The explicit states of the interview flow, in the order a normal interview visits them.
GREETING = "greeting"
ASKING = "asking"
LISTENING = "listening"
FOLLOW_UP = "follow_up"
NEXT = "next"
CLOSING = "closing"
ENDED = "ended"
PHASES = (GREETING, ASKING, LISTENING, FOLLOW_UP, NEXT, CLOSING, ENDED)

# Enough of the agent's side for a report and a resumed call, bounded so the
# Redis hash stays small in a long session.
MAX_CONVERSATION_ENTRIES = 200


@dataclass
class QuestionRecord:
    """One bank question as it went in this interview."""

    question_id: str
    follow_ups: list[str] = field(default_factory=list)  # follow-up questions asked, in order
    follow_up_sources: list[str] = field(default_factory=list)  # "llm" or "bank", one per follow-up
    answer_seqs: list[int] = field(default_factory=list)  # finals that answered it or its follow-ups
    # Per answer final: how many times the interviewer had spoken about this question
    # before it. A gap between finals of different parts is the interviewer talking,
    # not a pause of the candidate's.
    answer_parts: list[int] = field(default_factory=list)
    prompts: int = 0  # times the interviewer has spoken about this question (asked, repeated, hinted, followed up)
    skipped: bool = False
    unanswered: bool = False  # asked twice, no answer
    hints: int = 0


@dataclass
class AgentLine:
    utterance_id: int
    kind: str
    text: str
    interrupted: bool = False
    spoken_text: str = ""  # what went out before an interruption


@dataclass
class InterviewState:
    question_ids: list[str]
    phase: str = GREETING
    index: int = 0  # 0-based: the current question in question_ids
    reasked: bool = False  # the current prompt was repeated after silence
    started_at: float = 0.0  # wall clock when the greeting began
    ended_reason: str = ""
    last_agent_utterance: int = 0
    asked: list[QuestionRecord] = field(default_factory=list)
    conversation: list[AgentLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.question_ids)

    @property
    def current(self) -> QuestionRecord | None:
        return self.asked[-1] if self.asked else None

    @property
    def follow_ups_asked(self) -> int:
        return len(self.current.follow_ups) if self.current else 0

    def over_time(self, max_minutes: float) -> bool:
        """More than `max_minutes` since the greeting began (never before it began)."""
        return bool(self.started_at) and time.time() - self.started_at > max_minutes * 60

    def next_agent_utterance(self) -> int:
        self.last_agent_utterance += 1
        return self.last_agent_utterance

    def remember(self, line: AgentLine) -> None:
        self.conversation.append(line)
        del self.conversation[:-MAX_CONVERSATION_ENTRIES]

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> "InterviewState":
        data: dict[str, Any] = json.loads(raw)
        data["asked"] = [QuestionRecord(**q) for q in data.get("asked", [])]
        data["conversation"] = [AgentLine(**line) for line in data.get("conversation", [])]
        return cls(**data)

"""What a report is built from: the interview as it happened, questions and timed answers.

The server fills these in from the session's record (server/report_service.py);
`build_report` (agents/report.py) reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerFinal:
    text: str
    start: float  # session audio clock, seconds
    end: float
    words: tuple[tuple[str, float, float], ...]  # (word, start, end)
    # Which stretch of the answer this final belongs to: it goes up each time
    # the interviewer speaks in between (a follow-up, a hint, a repeat), e.g.
    # the number of follow-ups and hints given before it. A gap between finals
    # of different parts holds the interviewer's voice, so it is not the
    # candidate's pause; between finals of the same part it is.
    part: int = 0


@dataclass(frozen=True)
class AskedQuestion:
    index: int  # 1-based
    question_id: str
    text: str
    key_points: tuple[str, ...]
    follow_ups: tuple[str, ...]  # the follow-up questions actually asked
    answer: tuple[AnswerFinal, ...]  # every final of the answers to it and its follow-ups, in order
    skipped: bool
    hints: int


@dataclass(frozen=True)
class InterviewRecord:
    session_id: str
    role: str
    role_title: str
    difficulty: str
    started_at: float  # unix time
    ended_at: float
    questions: tuple[AskedQuestion, ...]
    pace_min_wps: float
    pace_max_wps: float
    long_pause_s: float
    audio_start_s: float = 0.0  # the audio clock when the interview began


def word_count(final: AnswerFinal) -> int:
    return len(final.words) if final.words else len(final.text.split())

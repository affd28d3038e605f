"""The interviewer's settings: one small frozen config, shared by the script and its helpers.

`server/configs.py` fills it from the server's settings; tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from earshot.agents.followup import TEMPERATURE


@dataclass(frozen=True)
class InterviewConfig:
    turn_pause_s: float = 0.7  # after an utterance the silence rule ended: the wait before taking the turn
    # After a turn the model called complete: the wait before taking it. The model takes some comma pauses for
    # the end ("Printing, then, for our purpose, | may be..."); the voice coming back within it keeps the turn.
    reply_gap_s: float = 0.2
    short_turn_wait_s: float = 2.0  # after a too-short utterance in model endpointing: the rest of the fallback silence
    answer_timeout_s: float = 20.0
    max_minutes: float = 30.0
    max_follow_ups: int = 1
    barge_in: bool = True
    llm_max_tokens: int = 60
    llm_temperature: float = TEMPERATURE  # what the follow-up prompt was tuned at

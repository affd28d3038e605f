"""The interviewer's reply to an answer: an acknowledgement, then maybe a follow-up question.

Every reply opens with a short acknowledgement whose audio is cached, so the
caller hears the interviewer the moment the turn is taken. An answer worth
probing (long enough, follow-ups left, time left) then gets a follow-up,
streamed sentence by sentence so the voice can start on the first one:

* the LLM's, through the `FollowUpStream` guard (agents/followup.py), which
  never lets a bad sentence through;
* or, when there is no model, the model is slow or down, or the guard rejects
  what it wrote, the bank's stock follow-up. A slow or failed model is
  reported (`llm_timeout`, `llm_unavailable`); a rejected output is not an
  outage and is only logged.

What was asked, and where it came from, is written into a `FollowUpDraft` as
the sentences stream, for the interview script to record once it is spoken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import AsyncIterator, Optional

from earshot.agents.followup import STOP, FollowUpStream, follow_up_messages
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.interview_state import InterviewState
from earshot.agents.ports import InterviewOutput, PreparedSpeech, Voice
from earshot.agents.question_bank import Question
from earshot.models.llm import LlmBackend, LlmError, LlmTimeout

log = logging.getLogger(__name__)

ACKNOWLEDGEMENTS = ("Thank you.", "Okay, thanks.", "Got it.", "Alright, thank you.")
# An answer shorter than this gets no follow-up: there is nothing specific to probe.
MIN_FOLLOW_UP_WORDS = 8


@dataclass
class FollowUpDraft:
    question: str = ""  # the follow-up question as it will be spoken
    source: str = "bank"  # "llm" when the model's question passed the guard


@dataclass
class PreparedFollowUp:
    """A follow-up being synthesised while the candidate may still go on."""

    speech: PreparedSpeech
    draft: FollowUpDraft  # filled in as the sentences are written


class FollowUpSpeech:
    def __init__(
        self,
        *,
        role_title: str,
        state: InterviewState,
        voice: Voice,
        output: InterviewOutput,
        llm: Optional[LlmBackend],
        config: InterviewConfig,
    ) -> None:
        self._title = role_title
        self._state = state
        self._voice = voice
        self._out = output
        self._llm = llm
        self._config = config
        self._turns = 0

    def acknowledgement(self) -> str:
        """The next of the stock acknowledgements, in turn."""
        self._turns += 1
        return ACKNOWLEDGEMENTS[self._turns % len(ACKNOWLEDGEMENTS)]

    def prepare(self, question: Question, answer: str) -> Optional[PreparedFollowUp]:
        """Start saying the acknowledgement and a follow-up; None if the answer gets no follow-up."""
        if not self._wanted(answer):
            return None
        draft = FollowUpDraft()
        return PreparedFollowUp(self._voice.prepare(self._sentences(question, answer, draft)), draft)

    def _wanted(self, answer: str) -> bool:
        return (
            self._state.follow_ups_asked < self._config.max_follow_ups
            and len(answer.split()) >= MIN_FOLLOW_UP_WORDS
            and not self._state.over_time(self._config.max_minutes)
        )

    async def _sentences(self, question: Question, answer: str, draft: FollowUpDraft) -> AsyncIterator[str]:
        """The acknowledgement, then the LLM's follow-up sentence by sentence, or a stock one."""
        yield self.acknowledgement()
        guard = FollowUpStream(question.text, answer)
        if self._llm is not None:
            messages = follow_up_messages(self._title, question.text, answer)
            stream = self._llm.stream_chat(
                messages,
                max_tokens=self._config.llm_max_tokens,
                temperature=self._config.llm_temperature,
                stop=STOP,  # one line: the question never needs a second
            )
            try:
                async for delta in stream:
                    for sentence in guard.feed(delta):
                        yield sentence
                    if guard.done:
                        break
            except LlmTimeout as exc:
                log.warning("follow-up: %s", exc)  # the detail (it may name the LLM's URL) stays in the log
                self._out.error("llm_timeout", "The language model was too slow; using a prepared follow-up.")
            except LlmError as exc:
                log.warning("follow-up: %s", exc)
                self._out.error("llm_unavailable", "The language model failed; using a prepared follow-up.")
            finally:
                await stream.aclose()
            verdict = guard.finish()
            if verdict.ok:
                draft.question, draft.source = guard.text.strip(), "llm"
                return
            log.info("follow-up from the LLM rejected (%s)", verdict.reason)
            log.debug("rejected follow-up: %r", guard.text)  # interview text: never at INFO
        stock = question.follow_ups[self._state.follow_ups_asked % len(question.follow_ups)]
        draft.question, draft.source = stock, "bank"
        yield stock

"""Post-interview reports: gathered from Redis, built off the event loop, stored back.

The interview state names, per question, which finals answered it; the finals
themselves (text, timing, words) are in the session's finals stream. The
sentence encoder is the process's shared one (server/encoder_service.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from earshot.agents.grammar import Correction
from earshot.agents.grammar_llm import llm_grammar_review
from earshot.agents.interview_state import ENDED, InterviewState
from earshot.agents.question_bank import QuestionBank
from earshot.agents.report import answer_sentences, build_report
from earshot.agents.report_record import AnswerFinal, AskedQuestion, InterviewRecord
from earshot.agents.roles import ROLES
from earshot.models.llm import LlmBackend, LlmError
from earshot.server.encoder_service import EncoderService
from earshot.server.settings import Settings
from earshot.server.store import SessionRecord, SessionStore

log = logging.getLogger(__name__)

LLM_GRAMMAR_TIMEOUT_S = 30.0


class ReportService:
    def __init__(
        self, settings: Settings, store: SessionStore, bank: QuestionBank, llm: Optional[LlmBackend], encoders: EncoderService
    ) -> None:
        self._settings = settings
        self._store = store
        self._bank = bank
        self._llm = llm
        self._encoders = encoders

    async def build_and_store(self, record: SessionRecord, state: InterviewState) -> dict[str, Any]:
        report = await self.build(record, state)
        await self._store.save_report(record.session_id, report)
        return report

    async def for_session(self, record: SessionRecord) -> Optional[dict[str, Any]]:
        """The stored report; else one built from what the interview has so far (None before any question)."""
        stored = await self._store.report(record.session_id)
        if stored is not None:
            return stored
        if not record.interview:
            return None
        state = InterviewState.from_json(record.interview)
        if not state.asked:
            return None
        if state.phase == ENDED:  # ended, but the report was lost (e.g. Redis was down then): build it for good
            return await self.build_and_store(record, state)
        return await self.build(record, state)

    async def build(self, record: SessionRecord, state: InterviewState) -> dict[str, Any]:
        finals = {final["seq"]: final for final in await self._store.finals(record.session_id)}
        interview = self._interview_record(record, state, finals)
        grammar = await self._llm_grammar(interview) if self._use_llm_grammar() else None
        # Its own thread, not the encoder's: a report takes ~0.5 s, and live calls' intents must not wait on it.
        report = await asyncio.to_thread(
            build_report, interview, self._encoders.encoder, threshold=self._settings.key_point_threshold, grammar=grammar
        )
        report["complete"] = state.phase == ENDED
        report["ended_reason"] = state.ended_reason
        return report

    def _interview_record(self, record: SessionRecord, state: InterviewState, finals: dict[int, dict]) -> InterviewRecord:
        questions = []
        for index, asked in enumerate(state.asked, start=1):
            question = self._bank.get(asked.question_id)
            parts = asked.answer_parts or [0] * len(asked.answer_seqs)
            answer = tuple(
                _answer_final(finals[seq], part) for seq, part in zip(asked.answer_seqs, parts) if seq in finals
            )
            questions.append(
                AskedQuestion(
                    index=index,
                    question_id=question.id,
                    text=question.text,
                    key_points=question.key_points,
                    follow_ups=tuple(asked.follow_ups),
                    answer=answer,
                    skipped=asked.skipped,
                    hints=asked.hints,
                )
            )
        return InterviewRecord(
            session_id=record.session_id,
            role=record.role,
            role_title=ROLES.get(record.role, record.role),
            difficulty=record.difficulty,
            started_at=state.started_at or record.created_at,
            ended_at=time.time(),
            questions=tuple(questions),
            pace_min_wps=self._settings.pace_min_wps,
            pace_max_wps=self._settings.pace_max_wps,
            long_pause_s=self._settings.long_pause_s,
        )

    def _use_llm_grammar(self) -> bool:
        mode = self._settings.grammar_llm
        if self._llm is None or mode == "off":
            return False
        return mode == "on" or self._llm.capable

    async def _llm_grammar(self, interview: InterviewRecord) -> Optional[list[Correction]]:
        sentences = answer_sentences(interview)
        if not sentences:
            return None
        try:
            return await asyncio.wait_for(llm_grammar_review(sentences, self._llm), LLM_GRAMMAR_TIMEOUT_S)
        except (LlmError, asyncio.TimeoutError) as exc:
            log.warning("LLM grammar review skipped: %s", exc)
            return None


def _answer_final(final: dict[str, Any], part: int) -> AnswerFinal:
    words = tuple((w["word"], float(w["start"]), float(w["end"])) for w in final.get("words", []))
    return AnswerFinal(text=final["text"], start=float(final["start"]), end=float(final["end"]), words=words, part=part)

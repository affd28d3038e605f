"""The interviewer on a live call: pipeline events in, agent events and speech out.

    SessionPipeline events --> SessionInterview.on_event --> Interviewer.heard
    Interviewer --> SessionVoice (TTS -> outbound track) and events on the data channel

`InterviewServices` is what every call shares (question bank, LLM, TTS phrase
cache, reports); one `SessionInterview` exists per connected call and holds
nothing that outlives it except what it saves to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Optional

from agents.inbox import FinalHeard, PartialHeard, SpeechEnded, SpeechStarted, VoiceHeard
from agents.interview_state import InterviewState
from agents.interviewer import (
    ACKNOWLEDGEMENTS,
    CLOSING_TEXT,
    MOVE_ON,
    REASK,
    SKIPPED,
    InterviewConfig,
    Interviewer,
    plan_interview,
)
from agents.question_bank import QuestionBank, QuestionBankError, load_question_bank
from agents.roles import ROLES
from agents.followup import warm_prompt_cache
from models.llm import LlmBackend, LlmConfig, LlmError, load_llm
from models.model_files import ModelMissingError
from models.tts import PiperTts
from server import events
from server.agent_voice import PlaybackEnd
from server.encoder_service import EncoderService
from server.errors import StartupError
from server.intents import FinalsWithIntents
from server.reports import ReportService
from server.settings import Settings
from server.store import SessionRecord, SessionStore
from server.voice import PhraseCache, SessionVoice

log = logging.getLogger(__name__)

# Said often enough that every call benefits from having them synthesised at start-up.
WARM_PHRASES = (*ACKNOWLEDGEMENTS, REASK, MOVE_ON, SKIPPED, *CLOSING_TEXT, "Hello, and welcome.")


def interview_config(settings: Settings) -> InterviewConfig:
    return InterviewConfig(
        turn_pause_s=settings.turn_pause_ms / 1000,
        answer_timeout_s=settings.answer_timeout_s,
        max_minutes=settings.interview_max_minutes,
        max_follow_ups=settings.max_follow_ups,
        barge_in=settings.barge_in,
        llm_max_tokens=settings.llm_max_tokens,
    )


def llm_config(settings: Settings) -> LlmConfig:
    return LlmConfig(
        backend=settings.llm_backend,
        model=settings.llm_model,
        url=settings.llm_url,
        api_key=settings.llm_api_key,
        threads=settings.llm_threads,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        timeout_s=settings.llm_timeout_s,
    )


@dataclass
class InterviewServices:
    settings: Settings
    bank: QuestionBank
    llm: Optional[LlmBackend]
    phrases: PhraseCache
    reports: ReportService

    @classmethod
    def load(cls, settings: Settings, store: SessionStore, encoders: EncoderService) -> "InterviewServices":
        """Load the bank, the LLM and the voice; any of them missing stops the start with a clear reason."""
        try:
            bank = load_question_bank(settings.question_dir) if settings.question_dir else load_question_bank()
        except QuestionBankError as exc:
            raise StartupError(f"the question bank is invalid:\n{exc}") from None
        try:
            llm = load_llm(llm_config(settings))
            tts = PiperTts.load(settings.tts_voice) if settings.tts_enabled else None
        except ModelMissingError as exc:
            raise StartupError(str(exc)) from None
        reports = ReportService(settings, store, bank, llm, encoders)
        return cls(settings, bank, llm, PhraseCache(tts), reports)

    async def warm(self) -> None:
        if self.phrases.available:
            await self.phrases.warm(WARM_PHRASES)
        if self.llm is not None:
            try:
                # llama.cpp caches the follow-up prompt's fixed start: the first follow-up
                # then takes ~0.4 s to its first token instead of ~1.2 s.
                await warm_prompt_cache(self.llm)
            except LlmError as exc:  # a server that is down now may be up by the first follow-up
                log.warning("LLM not warmed: %s", exc)

    async def close(self) -> None:
        if self.llm is not None:
            await self.llm.close()


class SessionInterview:
    """One call's interviewer, its voice, and the events they produce."""

    def __init__(
        self,
        services: InterviewServices,
        record: SessionRecord,
        send: Callable[[events.Event], None],
        audio_clock: Callable[[], float],
        save_fields: Callable[..., None],
        intents_follow_finals: bool = False,
    ) -> None:
        self.session_id = record.session_id
        # Each final waits for its intent (~10 ms), so the interviewer hears both
        # together and the head can name a command the word patterns miss.
        self._finals = FinalsWithIntents(self._final_heard, intents_follow_finals)
        self._services = services
        self._send = send
        self._clock = audio_clock
        self._save_fields = save_fields
        self._record = record
        if record.interview:
            state = InterviewState.from_json(record.interview)
        else:
            state = plan_interview(
                services.bank, record.role, record.difficulty, services.settings.interview_questions, record.session_id
            )
        self.voice = SessionVoice(
            services.phrases,
            on_audio_start=self._audio_started,
            on_audio_end=self._audio_ended,
            on_tts_failed=self._tts_failed,
        )
        self.interviewer = Interviewer(
            bank=services.bank,
            role_title=ROLES[record.role],
            state=state,
            voice=self.voice,
            output=self,
            llm=services.llm,
            config=interview_config(services.settings),
        )
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await self.interviewer.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # the call goes on as a transcription; the client is told
            log.exception("session %s: the interviewer failed", self.session_id)
            self.error("interviewer_failed", "The interviewer stopped because of an internal error; transcription goes on.")

    def on_event(self, event: events.Event) -> None:
        """Hand a pipeline event to the interviewer (from the event loop; returns at once)."""
        heard = self.interviewer.heard
        if isinstance(event, events.VoiceOnset):
            heard(VoiceHeard(event.at_s))
        elif isinstance(event, events.SpeechStart):
            heard(SpeechStarted(event.utterance_id))
        elif isinstance(event, events.Partial):
            heard(PartialHeard(event.utterance_id, f"{event.committed} {event.tentative}".strip()))
        elif isinstance(event, events.SpeechEnd):
            heard(SpeechEnded(event.utterance_id, event.dropped))
        else:
            self._finals.on_event(event)

    def _final_heard(self, final: events.Final, intents: tuple[events.IntentLabel, ...]) -> None:
        names = tuple(label.name for label in intents)
        self.interviewer.heard(FinalHeard(final.seq, final.utterance_id, final.text, names))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.voice.close()
        self.save(self.interviewer.state)

    # --- agents.ports.InterviewOutput ---------------------------------------------------
    def agent_text(self, utterance_id: int, delta: str, final: bool, kind: str, interrupted: bool = False) -> None:
        self._send(events.Agent(self.session_id, utterance_id, delta, final, kind, interrupted, self._now()))

    def turn(self, state: str, question_index: int) -> None:
        self._send(events.Turn(self.session_id, state, question_index, self._now()))

    def question(self, index: int, total: int, text: str, question_id: str, follow_up: bool) -> None:
        self._send(events.Question(self.session_id, index, total, text, question_id, follow_up))

    def error(self, code: str, message: str) -> None:
        self._send(events.Error(self.session_id, code=code, message=message))

    def save(self, state: InterviewState) -> None:
        self._save_fields(interview=state.to_json())

    async def finished(self, state: InterviewState) -> None:
        self.save(state)
        try:
            await self._services.reports.build_and_store(self._record, state)
        except Exception as exc:  # the report can be built again on request; the call must not die
            log.exception("session %s: report failed", self.session_id)
            self.error("report_failed", f"The report could not be built now ({exc}); it is retried when you open it.")
        self._send(events.ReportReady(self.session_id, url=f"/sessions/{self.session_id}/report"))

    # --- voice callbacks ------------------------------------------------------------------
    def _audio_started(self, utterance_id: int) -> None:
        self._send(events.AgentAudioStart(self.session_id, utterance_id, self._now()))

    def _audio_ended(self, end: PlaybackEnd) -> None:
        self._send(events.AgentAudioEnd(self.session_id, end.utterance_id, end.interrupted, round(end.played_s, 3), self._now()))

    def _tts_failed(self, message: str) -> None:
        self.error("tts_failed", f"The interviewer's voice failed ({message}); going on in text only.")

    def _now(self) -> float:
        return round(self._clock(), 3)

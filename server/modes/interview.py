"""The interview mode: the voice interviewer on a live call.

    call events --> InterviewMode.on_event --> Interviewer.heard (agents/interviewer.py)
    Interviewer --> SessionVoice (TTS -> the outbound track) and agent events, published by the call

`InterviewServices` is what every interview shares (the question bank, the
LLM, the TTS phrase cache, reports); one `InterviewMode` exists per connected
call and holds nothing that outlives it except what it saves to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from earshot.agents.commands import heard_labels
from earshot.agents.followup import warm_prompt_cache
from earshot.agents.inbox import HeardFinal, HeardNoFinal, HeardPartial, HeardSpeechEnd, HeardSpeechStart, HeardVoice
from earshot.agents.interview_state import InterviewState
from earshot.agents.interviewer import ACKNOWLEDGEMENTS, CLOSING_TEXT, MOVE_ON, REASK, SKIPPED, Interviewer, plan_interview
from earshot.agents.question_bank import QuestionBank, QuestionBankError, load_question_bank
from earshot.agents.roles import ROLES
from earshot.models.llm import LlmBackend, LlmError
from earshot.models.model_files import ModelMissingError
from earshot.models.tts import PiperTts
from earshot.server import protocol
from earshot.server.configs import interview_config
from earshot.server.encoder_service import EncoderService
from earshot.server.errors import StartupError
from earshot.server.intent_stage import FinalsWithIntents
from earshot.server.interviewer_voice import BargeInTimer, PhraseCache, SessionVoice, VoiceTimings
from earshot.server.modes.base import CallContext
from earshot.server.outbound_track import PlaybackEnd
from earshot.server.report_service import ReportService
from earshot.server.settings import Settings
from earshot.server.store import SessionStore
from earshot.server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Said often enough that every call benefits from having them synthesised at start-up.
WARM_PHRASES = (*ACKNOWLEDGEMENTS, REASK, MOVE_ON, SKIPPED, *CLOSING_TEXT, "Hello, and welcome.")


@dataclass
class InterviewServices:
    settings: Settings
    bank: QuestionBank
    llm: Optional[LlmBackend]
    phrases: PhraseCache
    reports: ReportService
    timings: VoiceTimings = field(default_factory=VoiceTimings)  # where every call's voice reports its timings

    @classmethod
    def load(
        cls, settings: Settings, store: SessionStore, encoders: EncoderService, llm: Optional[LlmBackend]
    ) -> "InterviewServices":
        """Load the bank and the voice; either missing stops the start with a clear reason."""
        try:
            bank = load_question_bank(settings.question_dir) if settings.question_dir else load_question_bank()
        except QuestionBankError as exc:
            raise StartupError(f"the question bank is invalid:\n{exc}") from None
        try:
            tts = PiperTts.load(settings.tts_voice) if settings.tts_enabled else None
        except ModelMissingError as exc:
            raise StartupError(str(exc)) from None
        reports = ReportService(settings, store, bank, llm, encoders)
        return cls(settings, bank, llm, PhraseCache(tts), reports)

    def open(self, context: CallContext) -> "InterviewMode":
        return InterviewMode(self, context)

    def observe_voice(self, *, first_audio: Callable[[float, bool], None], barge_in_stop: Callable[[float], None]) -> None:
        """Report the voice's timings of every call opened from now on (ServerMetrics calls this at start)."""
        self.timings = VoiceTimings(first_audio=first_audio, barge_in_stop=barge_in_stop)

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


class InterviewMode:
    """One call's interviewer and its voice; also the interviewer's `InterviewOutput` (agents/ports.py)."""

    def __init__(self, services: InterviewServices, context: CallContext) -> None:
        self._services = services
        self._context = context
        self.session_id = context.session_id
        record = context.record
        # Each final waits for its intent (~10 ms), so the interviewer hears both
        # together and the head can name a command the word patterns miss.
        self._finals = FinalsWithIntents(self._final_heard, context.intents_follow_finals)
        if record.interview:
            state = InterviewState.from_json(record.interview)
        else:
            state = plan_interview(
                services.bank, record.role, record.difficulty, services.settings.interview_questions, record.session_id
            )
        self._barge_in = BargeInTimer(context.now, services.timings.barge_in_stop)
        self.voice = SessionVoice(
            services.phrases,
            on_audio_start=self._audio_started,
            on_audio_end=self._audio_ended,
            on_tts_failed=self._tts_failed,
            on_first_audio=services.timings.first_audio,
            barge_in=self._barge_in,
        )
        self.outbound_track = self.voice.track
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

    # --- CallMode -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def on_event(self, event: protocol.Event) -> None:
        """The candidate's side of the call, as the interviewer hears it."""
        heard = self.interviewer.heard
        if isinstance(event, protocol.VoiceOnset):
            self._barge_in.voice_onset(event.at_s)  # before the interviewer hears it: that may pause the voice
            heard(HeardVoice(event.at_s))
        elif isinstance(event, protocol.SpeechStart):
            heard(HeardSpeechStart(event.utterance_id))
        elif isinstance(event, protocol.Partial):
            heard(HeardPartial(event.utterance_id, f"{event.committed} {event.tentative}".strip()))
        elif isinstance(event, protocol.SpeechEnd):
            heard(HeardSpeechEnd(event.utterance_id, event.dropped, event.ended_by, event.turn_complete))
        elif isinstance(event, protocol.NoFinal):
            heard(HeardNoFinal(event.utterance_id))
        else:
            self._finals.on_event(event)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self.voice.close()
        self.save(self.interviewer.state)

    async def _run(self) -> None:
        try:
            await self.interviewer.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # the call goes on as a transcription; the client is told
            log.exception("session %s: the interviewer failed", self.session_id)
            self.error("interviewer_failed", "The interviewer stopped because of an internal error; transcription goes on.")

    def _final_heard(self, final: protocol.Final, intents: tuple[protocol.IntentLabel, ...]) -> None:
        names = heard_labels((label.name, label.score) for label in intents)
        self.interviewer.heard(HeardFinal(final.seq, final.utterance_id, final.text, names))

    # --- agents.ports.InterviewOutput -------------------------------------------------------
    def agent_text(self, utterance_id: int, delta: str, final: bool, kind: str, interrupted: bool = False) -> None:
        self._publish(protocol.Agent(self.session_id, utterance_id, delta, final, kind, interrupted, self._context.now()))

    def turn(self, state: str, question_index: int) -> None:
        self._publish(protocol.Turn(self.session_id, state, question_index, self._context.now()))

    def question(self, index: int, total: int, text: str, question_id: str, follow_up: bool) -> None:
        self._publish(protocol.Question(self.session_id, index, total, text, question_id, follow_up))

    def error(self, code: str, message: str) -> None:
        self._publish(protocol.Error(self.session_id, code=code, message=message))

    def save(self, state: InterviewState) -> None:
        self._context.save_fields(interview=state.to_json())

    async def finished(self, state: InterviewState) -> None:
        self.save(state)
        try:
            await self._services.reports.build_and_store(self._context.record, state)
        except Exception:  # the report can be built again on request; the call must not die
            log.exception("session %s: report failed", self.session_id)
            self.error("report_failed", "The report could not be built now; it is retried when you open it.")
        self._publish(protocol.ReportReady(self.session_id, url=f"/sessions/{self.session_id}/report"))

    # --- voice callbacks ------------------------------------------------------------------
    def _audio_started(self, utterance_id: int) -> None:
        self._publish(protocol.AgentAudioStart(self.session_id, utterance_id, self._context.now()))

    def _audio_ended(self, end: PlaybackEnd) -> None:
        self._publish(
            protocol.AgentAudioEnd(self.session_id, end.utterance_id, end.interrupted, round(end.played_s, 3), self._context.now())
        )

    def _tts_failed(self, detail: str) -> None:
        # The detail (the TTS's own words) is logged where it failed, never sent to the caller.
        self.error("tts_failed", "The interviewer's voice failed; going on in text only.")

    def _publish(self, event: protocol.Event) -> None:
        self._context.publish(event)

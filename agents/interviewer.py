"""The voice interviewer: an explicit state machine over one interview.

    greeting -> asking -> listening -> (follow_up -> listening)* -> next -> asking ... -> closing -> ended

Read `run()` top to bottom for the whole interview. The interviewer hears the
candidate through `heard()` (speech start, partials, finals from the audio
pipeline), speaks through a `Voice`, and reports through an
`InterviewOutput`; it holds no transport, model or storage code itself.

Turn-taking. The candidate's turn ends `turn_pause_s` after a final with no
new speech, or at once when they say "that's all". The reply is prepared
*during* that pause: the follow-up is generated and synthesised as soon as a
final arrives and thrown away if the candidate goes on, so the pause hides
the LLM and TTS time. Every reply opens with a short acknowledgement whose
audio is cached, so the caller hears the interviewer the moment the turn is
taken.

Barge-in. When the candidate starts speaking while the interviewer talks, the
voice is paused on the next audio frame: already at the VAD's first hint of a
voice (60 ms), resumed if no speech start follows it, so a click costs a
blip and not a stop. Once speech has started:
* a backchannel ("yeah", "uh-huh", a cough the ASR finds no words in) resumes
  the voice where it stopped;
* anything else stops it for good; the reply is recorded as interrupted and
  what the candidate said is the start of their turn.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import AsyncIterator, Optional, Union

from earshot.agents.commands import Command, command_for, is_backchannel, is_filler_only, strip_done_phrase
from earshot.agents.followup import STOP, TEMPERATURE, FollowUpStream, follow_up_messages
from earshot.agents.inbox import Heard, HeardFinal, HeardPartial, HeardSpeechEnd, HeardSpeechStart, HeardVoice, Inbox
from earshot.agents.interview_state import (
    ASKING,
    CLOSING,
    ENDED,
    FOLLOW_UP,
    GREETING,
    LISTENING,
    NEXT,
    AgentLine,
    InterviewState,
    QuestionRecord,
)
from earshot.agents.ports import InterviewOutput, PreparedSpeech, Sentences, SpeechResult, Voice
from earshot.agents.question_bank import Question, QuestionBank
from earshot.models.llm import LlmBackend, LlmError, LlmTimeout

log = logging.getLogger(__name__)

ACKNOWLEDGEMENTS = ("Thank you.", "Okay, thanks.", "Got it.", "Alright, thank you.")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
WELCOME_BACK = "Welcome back. Let's pick up where we left off."
REASK = "Take your time. Here is the question again."
MOVE_ON = "Let's move on."
SKIPPED = "Sure, let's skip that one."
CLOSING_TEXT = ("That brings us to the end of the interview.", "Thank you for your time.", "Your report is ready on the screen.")
STOPPED_TEXT = ("Sure, let's stop here.", "Thank you for your time.", "Your report is ready on the screen.")
# An answer shorter than this gets no follow-up: there is nothing specific to probe.
MIN_FOLLOW_UP_WORDS = 8
# While paused for a possible barge-in, stop for good if no verdict comes by then.
BARGE_IN_DECISION_S = 4.0
# After a voice onset, how long a speech start may take before the pause is undone.
ONSET_CONFIRM_S = 0.25
# Longest wait for the final of an utterance that ended (an ASR failure sends none).
FINAL_WAIT_S = 5.0
# A partial with this many words, not all backchannel, is the candidate taking the turn.
BARGE_IN_PARTIAL_WORDS = 2


@dataclass(frozen=True)
class InterviewConfig:
    turn_pause_s: float = 0.7
    answer_timeout_s: float = 20.0
    max_minutes: float = 30.0
    max_follow_ups: int = 1
    barge_in: bool = True
    llm_max_tokens: int = 60
    llm_temperature: float = TEMPERATURE  # what the follow-up prompt was tuned at


def plan_interview(bank: QuestionBank, role: str, difficulty: str, count: int, seed: str) -> InterviewState:
    """Pick the interview's questions: a shuffle seeded by the session, so a reload asks the same ones."""
    questions = bank.questions(role, difficulty)
    random.Random(seed).shuffle(questions)
    return InterviewState(question_ids=[q.id for q in questions[:count]])


@dataclass
class _Reply:
    """A reply being prepared while the candidate may still go on."""

    speech: Optional[PreparedSpeech]  # None: the reply is the next question, said by _question_turns
    follow_up: Optional["_FollowUpDraft"]


@dataclass
class _FollowUpDraft:
    question: str = ""  # the follow-up question as it will be spoken
    source: str = "bank"  # "llm" when the model's question passed the guard


@dataclass
class _TurnEnd:
    kind: str  # "answer" | "silent" | "command"
    finals: list[HeardFinal]
    command: Optional[Command] = None
    reply: Optional[_Reply] = None


class Interviewer:
    def __init__(
        self,
        *,
        bank: QuestionBank,
        role_title: str,
        state: InterviewState,
        voice: Voice,
        output: InterviewOutput,
        llm: Optional[LlmBackend],
        config: InterviewConfig,
    ) -> None:
        self._bank = bank
        self._title = role_title
        self._state = state
        self._voice = voice
        self._out = output
        self._llm = llm
        self._config = config
        self._inbox = Inbox()
        self._lead: list[str] = []  # said before the next question: an acknowledgement, "let's skip that"
        self._turns = 0
        self._onset_timer: Optional[asyncio.TimerHandle] = None  # undoes a pause made on a mere onset
        self._barge_verdict_pending = False  # _play holds the voice paused until it decides

    @property
    def state(self) -> InterviewState:
        return self._state

    # --- input ------------------------------------------------------------------------
    def heard(self, item: Union[Heard, HeardVoice]) -> None:
        """Called from the event loop for every pipeline event; must return at once."""
        if isinstance(item, HeardVoice):
            if self._config.barge_in and self._voice.speaking and self._onset_timer is None:
                self._voice.pause()  # silence on the next frame, before the VAD is sure
                loop = asyncio.get_running_loop()
                self._onset_timer = loop.call_later(ONSET_CONFIRM_S, self._onset_not_confirmed)
            return
        if isinstance(item, HeardSpeechStart):
            if self._onset_timer is not None:
                self._onset_timer.cancel()  # confirmed: _play decides from here
                self._onset_timer = None
            if self._config.barge_in and self._voice.speaking:
                self._voice.pause()  # silence on the next frame; the verdict comes in _play
        self._inbox.put(item)

    def _onset_not_confirmed(self) -> None:
        self._onset_timer = None
        if not self._barge_verdict_pending:
            self._voice.resume()  # a click, not speech: go on talking

    # --- the interview ------------------------------------------------------------------
    async def run(self) -> None:
        st = self._state
        if st.phase == ENDED:
            self._enter(ENDED)
            await self._out.finished(st)
            return
        # A reconnect lands in the phase the last call left: re-ask an open question,
        # go on to the next one, or finish closing.
        resume_prompt = bool(st.asked) and st.phase in (ASKING, LISTENING, FOLLOW_UP)
        if st.asked or st.phase == CLOSING:
            await self._say("notice", [WELCOME_BACK])
        else:
            st.started_at = time.time()
            await self._greet()

        while st.phase != CLOSING:
            if not resume_prompt and not self._begin_next_question():
                break
            resume_prompt = False
            await self._question_turns()
        await self._close()

    async def _greet(self) -> None:
        self._enter(GREETING)
        total = self._state.total
        plural = "question" if total == 1 else "questions"
        await self._say(
            "greeting",
            [
                "Hello, and welcome.",
                f"I'm Earshot, and I'll be interviewing you today for the {self._title} role.",
                f"I have {total} {plural} for you.",
                "When you have finished an answer, just pause, or say that's all.",
                "You can ask me to repeat a question, give you a hint, or skip it.",
            ],
        )
        # Whatever was said over the greeting ("hi!") answers nothing.
        self._inbox.clear()

    def _begin_next_question(self) -> bool:
        st = self._state
        next_index = len(st.asked)
        if next_index >= st.total or self._over_time():
            return False
        st.index = next_index
        st.reasked = False
        st.asked.append(QuestionRecord(question_id=st.question_ids[next_index]))
        return True

    async def _question_turns(self) -> None:
        """Ask the current question, then listen and follow up until it is time to move on."""
        st = self._state
        record = st.current
        question = self._bank.get(record.question_id)
        number = st.index + 1
        if record.follow_ups:  # resumed while a follow-up was open: ask it again
            prompt, kind, follow_up = record.follow_ups[-1], "follow_up", True
            intro = []
        else:
            prompt, kind, follow_up = question.text, "question", False
            ordinal = ORDINALS[st.index] if st.index < len(ORDINALS) else f"number {number}"
            intro = [f"Here is the {ordinal} question." if st.index == 0 else f"Question {number} of {st.total}."]
        self._enter(ASKING)
        self._out.question(number, st.total, prompt, question.id, follow_up)
        await self._say(kind, [*self._take_lead(), *intro, prompt])

        while True:
            self._enter(LISTENING)
            turn = await self._listen(question)
            if turn.kind == "silent":
                if not st.reasked:
                    st.reasked = True
                    await self._say("repeat", [REASK, prompt])
                    continue
                if not record.answer_seqs:
                    record.unanswered = True
                self._lead = [MOVE_ON]
                break
            if turn.kind == "command":
                self._record_answer(record, turn.finals)
                if turn.command is Command.REPEAT:
                    await self._say("repeat", [prompt])
                    continue
                if turn.command is Command.HINT:
                    record.hints += 1
                    await self._say("hint", [self._hint(question, record.hints)])
                    continue
                if turn.command is Command.SKIP:
                    record.skipped = not record.answer_seqs  # skipping a follow-up keeps the answer
                    self._lead = [SKIPPED]
                    break
                if turn.command is Command.STOP:
                    st.ended_reason = "stopped by the candidate"
                    self._enter(CLOSING)
                    return
            # An answer.
            self._record_answer(record, turn.finals)
            st.reasked = False
            self._out.save(st)
            reply = turn.reply
            if reply is None or reply.follow_up is None:
                self._lead = [self._acknowledgement()]
                break
            self._enter(FOLLOW_UP)
            await self._play("follow_up", reply.speech)
            draft = reply.follow_up
            prompt = draft.question or prompt
            record.follow_ups.append(prompt)
            record.follow_up_sources.append(draft.source)
            st.reasked = False
            self._out.question(number, st.total, prompt, question.id, True)
        self._enter(NEXT)

    async def _close(self) -> None:
        st = self._state
        if st.phase != CLOSING:
            self._enter(CLOSING)
        stopped = st.ended_reason == "stopped by the candidate"
        if not st.ended_reason:
            st.ended_reason = "time limit" if self._over_time() else "all questions asked"
        await self._say("closing", [*([] if stopped else self._take_lead()), *(STOPPED_TEXT if stopped else CLOSING_TEXT)])
        self._enter(ENDED)
        await self._out.finished(st)

    # --- listening ----------------------------------------------------------------------------
    async def _listen(self, question: Question) -> _TurnEnd:
        """Collect the candidate's turn, preparing the reply while they may still go on.

        The turn pause is counted from the end of speech (the VAD's verdict),
        not from the final's arrival, so the final's decode time overlaps the
        pause instead of adding to it. The turn still waits for that final.
        """
        finals: list[HeardFinal] = []
        speaking = False
        awaiting_finals = 0  # utterances that ended and whose final has not come yet
        pause_from: Optional[float] = None  # when the candidate last stopped speaking
        reply: Optional[_Reply] = None
        loop = asyncio.get_running_loop()
        silence_deadline = loop.time() + self._config.answer_timeout_s

        def drop_reply() -> None:
            nonlocal reply
            if reply is not None and reply.speech is not None:
                reply.speech.cancel()
            reply = None

        while True:
            if speaking:
                timeout = None
            elif awaiting_finals:  # bounded: a decode that failed sends no final
                timeout = max(0.0, (pause_from or loop.time()) + FINAL_WAIT_S - loop.time())
            elif finals:
                timeout = max(0.0, (pause_from or loop.time()) + self._config.turn_pause_s - loop.time())
            else:
                timeout = max(0.0, silence_deadline - loop.time())
            item = await self._inbox.get(timeout=timeout)
            if item is None:  # the pause or the silence ran out
                if awaiting_finals:
                    awaiting_finals = 0
                    continue
                if finals:
                    return _TurnEnd("answer", finals, reply=reply)
                return _TurnEnd("silent", finals)
            if isinstance(item, HeardSpeechStart):
                speaking = True
                pause_from = None
                drop_reply()  # they went on: the answer is not complete
            elif isinstance(item, HeardSpeechEnd):
                speaking = False
                pause_from = loop.time()
                if item.dropped:
                    silence_deadline = max(silence_deadline, loop.time() + self._config.turn_pause_s)
                else:
                    awaiting_finals += 1
            elif isinstance(item, HeardFinal):
                awaiting_finals = max(0, awaiting_finals - 1)
                if pause_from is None and not speaking:
                    pause_from = loop.time()  # a final heard over the interviewer's voice: no end seen here
                command = command_for(item.text, item.intents)
                if command in (Command.REPEAT, Command.HINT, Command.SKIP, Command.STOP):
                    drop_reply()
                    return _TurnEnd("command", finals, command=command)
                text = strip_done_phrase(item.text) if command is Command.DONE else item.text
                if not is_filler_only(text):
                    finals.append(HeardFinal(item.seq, item.utterance_id, text))
                if command is Command.DONE:
                    if not finals:
                        return _TurnEnd("silent", finals)
                    drop_reply()
                    return _TurnEnd("answer", finals, reply=self._prepare_reply(question, finals))
                if finals:
                    drop_reply()
                    reply = self._prepare_reply(question, finals)
                silence_deadline = loop.time() + self._config.answer_timeout_s

    def _prepare_reply(self, question: Question, finals: list[HeardFinal]) -> _Reply:
        answer = " ".join(f.text.strip() for f in finals)
        if self._wants_follow_up(answer):
            draft = _FollowUpDraft()
            return _Reply(self._voice.prepare(self._follow_up_sentences(question, answer, draft)), draft)
        return _Reply(None, None)

    def _wants_follow_up(self, answer: str) -> bool:
        return (
            self._state.follow_ups_asked < self._config.max_follow_ups
            and len(answer.split()) >= MIN_FOLLOW_UP_WORDS
            and not self._over_time()
        )

    async def _follow_up_sentences(self, question: Question, answer: str, draft: _FollowUpDraft) -> AsyncIterator[str]:
        """The acknowledgement, then the LLM's follow-up sentence by sentence, or a stock one."""
        yield self._acknowledgement()
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
                self._out.error("llm_timeout", f"The language model was too slow ({exc}); using a prepared follow-up.")
            except LlmError as exc:
                self._out.error("llm_unavailable", f"The language model failed ({exc}); using a prepared follow-up.")
            finally:
                await stream.aclose()
            verdict = guard.finish()
            if verdict.ok:
                draft.question, draft.source = guard.text.strip(), "llm"
                return
            log.info("follow-up from the LLM rejected (%s): %r", verdict.reason, guard.text)
        stock = question.follow_ups[self._state.follow_ups_asked % len(question.follow_ups)]
        draft.question, draft.source = stock, "bank"
        yield stock

    # --- speaking ----------------------------------------------------------------------------
    async def _say(self, kind: str, sentences: Sentences) -> SpeechResult:
        return await self._play(kind, self._voice.prepare(sentences))

    async def _play(self, kind: str, speech: PreparedSpeech) -> SpeechResult:
        """Speak, handling barge-in; what the candidate said meanwhile is kept for the next listen."""
        st = self._state
        utterance_id = st.next_agent_utterance()
        if st.current is not None and kind in ("question", "follow_up", "repeat", "hint"):
            st.current.prompts += 1

        def on_sentence(sentence: str) -> None:
            self._out.agent_text(utterance_id, sentence + " ", False, kind)

        playing = asyncio.ensure_future(self._voice.play(utterance_id, speech, on_sentence))
        carried: list[Heard] = []
        barge_utterance: Optional[int] = None  # the candidate utterance the voice is paused for
        loop = asyncio.get_running_loop()
        decide_by = 0.0
        while not playing.done():
            timeout = max(0.0, decide_by - loop.time()) if barge_utterance is not None else None
            self._barge_verdict_pending = barge_utterance is not None
            item = await self._inbox.get(timeout=timeout, until=playing)
            if item is None:
                if barge_utterance is not None and not playing.done():
                    self._voice.stop()  # no verdict in time: treat it as a real interruption
                    barge_utterance = None
                continue
            carried.append(item)
            if isinstance(item, HeardSpeechStart) and self._config.barge_in and barge_utterance is None:
                barge_utterance, decide_by = item.utterance_id, loop.time() + BARGE_IN_DECISION_S
            elif barge_utterance is None or getattr(item, "utterance_id", None) != barge_utterance:
                continue
            elif isinstance(item, HeardPartial) and _takes_the_turn(item.text):
                self._voice.stop()
                barge_utterance = None
            elif isinstance(item, HeardFinal) or (isinstance(item, HeardSpeechEnd) and item.dropped):
                text, intents = (item.text, item.intents) if isinstance(item, HeardFinal) else ("", ())
                if is_backchannel(text) and command_for(text, intents) is None:
                    carried = [c for c in carried if getattr(c, "utterance_id", None) != barge_utterance]
                    self._voice.resume()
                else:
                    self._voice.stop()
                barge_utterance = None
        result = await playing
        self._barge_verdict_pending = False
        if barge_utterance is not None:
            self._voice.resume()  # the reply ended on its own before the verdict
        self._out.agent_text(utterance_id, "", True, kind, interrupted=result.interrupted)
        st.remember(AgentLine(utterance_id, kind, result.text.strip(), result.interrupted, result.spoken_text.strip()))
        self._out.save(st)
        self._inbox.put_back(carried)
        return result

    # --- small helpers ---------------------------------------------------------------------
    @staticmethod
    def _record_answer(record: QuestionRecord, finals: list[HeardFinal]) -> None:
        record.answer_seqs.extend(f.seq for f in finals)
        record.answer_parts.extend(record.prompts for _ in finals)

    def _enter(self, phase: str) -> None:
        self._state.phase = phase
        self._out.turn(phase, self._state.index + 1 if self._state.asked else 0)
        self._out.save(self._state)

    def _take_lead(self) -> list[str]:
        lead, self._lead = self._lead, []
        return lead

    def _acknowledgement(self) -> str:
        self._turns += 1
        return ACKNOWLEDGEMENTS[self._turns % len(ACKNOWLEDGEMENTS)]

    def _hint(self, question: Question, hints: int) -> str:
        point = question.key_points[(hints - 1) % len(question.key_points)]
        return f"Here is a hint. A strong answer might touch on this: {point}."

    def _over_time(self) -> bool:
        started = self._state.started_at
        return bool(started) and time.time() - started > self._config.max_minutes * 60


def _takes_the_turn(partial_text: str) -> bool:
    words = partial_text.split()
    return len(words) >= BARGE_IN_PARTIAL_WORDS and not is_backchannel(partial_text)

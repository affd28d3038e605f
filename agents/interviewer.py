"""The voice interviewer: an explicit state machine over one interview.

    greeting -> asking -> listening -> (follow_up -> listening)* -> next -> asking ... -> closing -> ended

Read `Interviewer.run()` top to bottom for the whole interview: the greeting,
then for each question `_question_turns()` (ask, listen, then repeat, hint,
skip, stop, re-ask after silence, or follow up), then the closing. Every phase
change goes through `_enter()`, which reports it and saves the state
(agents/interview_state.py), so a reconnect resumes where the call left off.

The interviewer hears the candidate through `heard()` (voice onsets, speech
start, partials, finals from the audio pipeline, queued in an `Inbox`:
agents/inbox.py), speaks through a `Voice` and reports through an
`InterviewOutput` (agents/ports.py); it holds no transport, model or storage
code itself. The script here leans on three helpers, each given the inbox,
voice, output, state and config it shares with the others:

* turn-taking, `Listener` (agents/turn_taking.py): collects the candidate's
  turn; it ends a pause after the end of speech, at "that's all" or a
  command, or as silence; the reply is prepared during that pause;
* the reply, `FollowUpSpeech` (agents/followup_speech.py): an
  acknowledgement, then the LLM's follow-up streamed through the guard, or a
  stock one from the bank;
* barge-in, `Speaker` (agents/barge_in.py): plays speech while hearing the
  candidate; a voice onset pauses it, a backchannel resumes it, anything else
  stops it and starts the candidate's turn.
"""

from __future__ import annotations

import random
import time
from typing import Optional, Union

from earshot.agents.barge_in import Speaker
from earshot.agents.commands import Command
from earshot.agents.followup_speech import ACKNOWLEDGEMENTS, FollowUpSpeech
from earshot.agents.inbox import Heard, HeardFinal, HeardSpeechStart, HeardVoice, Inbox
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.interview_state import (
    ASKING,
    CLOSING,
    ENDED,
    FOLLOW_UP,
    GREETING,
    LISTENING,
    NEXT,
    InterviewState,
    QuestionRecord,
)
from earshot.agents.ports import InterviewOutput, Voice
from earshot.agents.question_bank import Question, QuestionBank
from earshot.agents.turn_taking import Listener
from earshot.models.llm import LlmBackend

__all__ = [
    "ACKNOWLEDGEMENTS",
    "CLOSING_TEXT",
    "MOVE_ON",
    "REASK",
    "SKIPPED",
    "InterviewConfig",
    "Interviewer",
    "plan_interview",
]

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
WELCOME_BACK = "Welcome back. Let's pick up where we left off."
REASK = "Take your time. Here is the question again."
MOVE_ON = "Let's move on."
SKIPPED = "Sure, let's skip that one."
CLOSING_TEXT = ("That brings us to the end of the interview.", "Thank you for your time.", "Your report is ready on the screen.")
STOPPED_TEXT = ("Sure, let's stop here.", "Thank you for your time.", "Your report is ready on the screen.")


def plan_interview(bank: QuestionBank, role: str, difficulty: str, count: int, seed: str) -> InterviewState:
    """Pick the interview's questions: a shuffle seeded by the session, so a reload asks the same ones."""
    questions = bank.questions(role, difficulty)
    random.Random(seed).shuffle(questions)
    return InterviewState(question_ids=[q.id for q in questions[:count]])


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
        self._out = output
        self._config = config
        self._inbox = Inbox()
        self._speaker = Speaker(inbox=self._inbox, state=state, voice=voice, output=output, config=config)
        self._follow_ups = FollowUpSpeech(
            role_title=role_title, state=state, voice=voice, output=output, llm=llm, config=config
        )
        self._listener = Listener(inbox=self._inbox, follow_ups=self._follow_ups, config=config)
        self._lead: list[str] = []  # said before the next question: an acknowledgement, "let's skip that"

    @property
    def state(self) -> InterviewState:
        return self._state

    # --- input ------------------------------------------------------------------------
    def heard(self, item: Union[Heard, HeardVoice]) -> None:
        """Called from the event loop for every pipeline event; must return at once."""
        if isinstance(item, HeardVoice):
            self._speaker.voice_onset()
            return
        if isinstance(item, HeardSpeechStart):
            self._speaker.speech_started()
        self._inbox.put(item)

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
            await self._speaker.say("notice", [WELCOME_BACK])
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
        await self._speaker.say(
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
        await self._speaker.say(kind, [*self._take_lead(), *intro, prompt])

        while True:
            self._enter(LISTENING)
            turn = await self._listener.listen(question)
            if turn.kind == "silent":
                if not st.reasked:
                    st.reasked = True
                    await self._speaker.say("repeat", [REASK, prompt])
                    continue
                if not record.answer_seqs:
                    record.unanswered = True
                self._lead = [MOVE_ON]
                break
            if turn.kind == "command":
                self._record_answer(record, turn.finals)
                if turn.command is Command.REPEAT:
                    await self._speaker.say("repeat", [prompt])
                    continue
                if turn.command is Command.HINT:
                    record.hints += 1
                    await self._speaker.say("hint", [self._hint(question, record.hints)])
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
            if reply is None:
                self._lead = [self._follow_ups.acknowledgement()]
                break
            self._enter(FOLLOW_UP)
            await self._speaker.play("follow_up", reply.speech)
            prompt = reply.draft.question or prompt
            record.follow_ups.append(prompt)
            record.follow_up_sources.append(reply.draft.source)
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
        closing = STOPPED_TEXT if stopped else CLOSING_TEXT
        await self._speaker.say("closing", [*([] if stopped else self._take_lead()), *closing])
        self._enter(ENDED)
        await self._out.finished(st)

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

    def _hint(self, question: Question, hints: int) -> str:
        point = question.key_points[(hints - 1) % len(question.key_points)]
        return f"Here is a hint. A strong answer might touch on this: {point}."

    def _over_time(self) -> bool:
        return self._state.over_time(self._config.max_minutes)

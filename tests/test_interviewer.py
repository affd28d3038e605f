"""The interview state machine on its own: scripted candidate input, a voice that only keeps time.

These are unit tests of pure flow logic (what is said when, what is recorded);
the same flow over real WebRTC, Whisper, llama.cpp and Piper is in
test_interview_call.py.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Optional, Sequence

import pytest

from earshot.agents.inbox import HeardFinal, HeardNoFinal, HeardPartial, HeardSpeechEnd, HeardSpeechStart
from earshot.agents.interview_state import CLOSING, ENDED, LISTENING, InterviewState
from earshot.agents.interviewer import InterviewConfig, Interviewer, plan_interview
from earshot.agents.ports import SpeechResult
from earshot.agents.question_bank import load_question_bank
from earshot.models.llm import ChatMessage, LlmError

BANK = load_question_bank()
SENTENCE_S = 0.03  # how long the fake voice takes to "say" a sentence


class FakeVoice:
    """Keeps time like a voice: each sentence takes SENTENCE_S, pausable and stoppable."""

    def __init__(self) -> None:
        self.said: list[tuple[int, str]] = []  # (utterance_id, sentence) as released
        self._paused = False
        self._stopped = asyncio.Event()
        self._speaking = False
        self.pauses = 0

    def prepare(self, sentences):
        queue: asyncio.Queue = asyncio.Queue()

        async def produce() -> None:
            try:
                if hasattr(sentences, "__aiter__"):
                    async for s in sentences:
                        queue.put_nowait(s)
                else:
                    for s in sentences:
                        queue.put_nowait(s)
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(produce())
        task.queue = queue  # type: ignore[attr-defined]
        return task

    async def play(self, utterance_id, speech, on_sentence) -> SpeechResult:
        self._stopped.clear()
        self._speaking = True
        released, spoken = [], []
        try:
            while True:
                sentence = await speech.queue.get()
                if sentence is None:
                    break
                on_sentence(sentence)
                released.append(sentence)
                self.said.append((utterance_id, sentence))
                elapsed = 0.0
                spoken.append(sentence)
                while elapsed < SENTENCE_S or self._paused:
                    if self._stopped.is_set():
                        return SpeechResult(True, 0.0, " ".join(spoken), " ".join(released))
                    await asyncio.sleep(0.005)
                    if not self._paused:
                        elapsed += 0.005
            return SpeechResult(False, 0.0, " ".join(spoken), " ".join(released))
        finally:
            self._speaking = False
            speech.cancel()

    def pause(self) -> None:
        self._paused = True
        self.pauses += 1

    def resume(self) -> None:
        self._paused = False

    def stop(self) -> None:
        self._paused = False
        self._stopped.set()

    @property
    def speaking(self) -> bool:
        return self._speaking

    def text(self) -> str:
        return " ".join(s for _, s in self.said)


class FakeOutput:
    def __init__(self) -> None:
        self.turns: list[str] = []
        self.questions: list[tuple[int, int, str, bool]] = []
        self.agent: list[tuple[int, str, bool, str, bool]] = []
        self.errors: list[str] = []
        self.saved: list[str] = []
        self.finished_with: Optional[InterviewState] = None

    def agent_text(self, utterance_id, delta, final, kind, interrupted=False):
        self.agent.append((utterance_id, delta, final, kind, interrupted))

    def turn(self, state, question_index):
        self.turns.append(state)

    def question(self, index, total, text, question_id, follow_up):
        self.questions.append((index, total, text, follow_up))

    def error(self, code, message):
        self.errors.append(code)

    def save(self, state):
        self.saved.append(state.to_json())

    async def finished(self, state):
        self.finished_with = state


class CannedLlm:
    """Streams a fixed reply in small pieces, or fails the way a dead server does."""

    name = "canned"
    capable = False

    def __init__(self, reply: str = "", fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail
        self.prompts: list[Sequence[ChatMessage]] = []

    async def stream_chat(self, messages, *, max_tokens, temperature=0.3, stop=()) -> AsyncIterator[str]:
        self.prompts.append(messages)
        if self.fail:
            raise LlmError("connection refused by http://127.0.0.1:9/v1")
        for i in range(0, len(self.reply), 4):
            await asyncio.sleep(0)
            yield self.reply[i : i + 4]

    async def close(self) -> None:
        pass


class Script:
    """Plays the candidate: feeds the interviewer what the audio pipeline would."""

    def __init__(self, interviewer: Interviewer, output: FakeOutput) -> None:
        self.interviewer = interviewer
        self.output = output
        self.utterance = 0
        self.seq = 0

    async def until_listening(self, count: int = 1, timeout: float = 5.0) -> None:
        target = self.output.turns.count(LISTENING) + count - 1
        async def wait() -> None:
            while self.output.turns.count(LISTENING) <= target or self.output.turns[-1] != LISTENING:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(wait(), timeout)

    async def says(self, text: str, partial: bool = False) -> None:
        self.utterance += 1
        self.seq += 1
        heard = self.interviewer.heard
        heard(HeardSpeechStart(self.utterance))
        await asyncio.sleep(0.01)
        if partial:
            heard(HeardPartial(self.utterance, text))
            await asyncio.sleep(0.01)
        heard(HeardSpeechEnd(self.utterance, dropped=False))
        heard(HeardFinal(self.seq, self.utterance, text))


ANSWER = "I would use a hash map keyed by user id, with a lock around writes so two threads never clash."
GOOD_FOLLOW_UP = "Why did you choose a lock around the writes?"


def make(llm=None, questions: int = 2, **config) -> tuple[Interviewer, FakeVoice, FakeOutput, Script]:
    state = plan_interview(BANK, "software_engineer", "easy", questions, seed="test-session")
    voice, output = FakeVoice(), FakeOutput()
    settings = dict(turn_pause_s=0.15, answer_timeout_s=0.6, max_follow_ups=1, barge_in=True)
    settings.update(config)
    interviewer = Interviewer(
        bank=BANK, role_title="Software engineer", state=state, voice=voice, output=output,
        llm=llm, config=InterviewConfig(**settings),
    )
    return interviewer, voice, output, Script(interviewer, output)


async def test_full_flow_greeting_questions_follow_up_and_report():
    llm = CannedLlm(GOOD_FOLLOW_UP)
    interviewer, voice, output, script = make(llm)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    assert output.turns[:3] == ["greeting", "asking", "listening"]
    first_id = interviewer.state.question_ids[0]
    assert output.questions[0] == (1, 2, BANK.get(first_id).text, False)
    await script.says(ANSWER)
    await script.until_listening()
    assert output.questions[-1] == (1, 2, GOOD_FOLLOW_UP, True)
    assert "Why did you choose a lock" in voice.text()
    await script.says("Because the map is shared, and without the lock two writers could lose an update. That's all.")
    await script.until_listening()
    assert output.questions[-1][0] == 2 and not output.questions[-1][3]
    await script.says("Let's stop here.")
    await asyncio.wait_for(run, 5)

    state = output.finished_with
    assert state is not None and state.phase == ENDED
    assert state.ended_reason == "stopped by the candidate"
    first, second = state.asked
    assert first.follow_ups == [GOOD_FOLLOW_UP] and first.follow_up_sources == ["llm"]
    assert first.answer_seqs == [1, 2]
    assert second.answer_seqs == []
    assert output.turns[-2:] == [CLOSING, ENDED]
    # Every agent utterance got exactly one final agent event.
    finals = [a for a in output.agent if a[2]]
    assert len(finals) == len({a[0] for a in output.agent})
    # The prompt carried the question and the answer (what the follow-up must be about).
    prompt = " ".join(m.content for m in llm.prompts[-1])
    assert "hash map" in prompt and BANK.get(first_id).text in prompt


async def test_bad_llm_output_falls_back_to_the_bank_follow_up():
    llm = CannedLlm("As an AI language model, I cannot ask questions.")
    interviewer, voice, output, script = make(llm, questions=1)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    await script.says(ANSWER)
    await script.until_listening()
    question = BANK.get(interviewer.state.question_ids[0])
    assert output.questions[-1] == (1, 1, question.follow_ups[0], True)
    assert "As an AI" not in voice.text()
    assert interviewer.state.current.follow_up_sources == ["bank"]
    assert output.errors == []  # a rejected output is not an outage
    run.cancel()


async def test_unreachable_llm_goes_on_with_the_bank_and_reports_an_error():
    interviewer, voice, output, script = make(CannedLlm(fail=True), questions=1)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    await script.says(ANSWER)
    await script.until_listening()
    question = BANK.get(interviewer.state.question_ids[0])
    assert output.questions[-1][2] == question.follow_ups[0]
    assert output.errors == ["llm_unavailable"]
    run.cancel()


async def test_commands_repeat_hint_skip():
    interviewer, voice, output, script = make(CannedLlm(GOOD_FOLLOW_UP))
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    question = BANK.get(interviewer.state.question_ids[0])
    said_before = len(voice.said)
    await script.says("Sorry, could you repeat that?")
    await script.until_listening()
    assert voice.said[-1][1] == question.text and len(voice.said) > said_before
    await script.says("Can I get a hint?")
    await script.until_listening()
    assert "hint" in voice.said[-1][1].lower() and question.key_points[0] in voice.said[-1][1]
    await script.says("Can I skip this one?")
    await script.until_listening()
    assert output.questions[-1][0] == 2
    first = interviewer.state.asked[0]
    assert first.skipped and first.hints == 1 and first.answer_seqs == []
    assert any("skip" in s.lower() for _, s in voice.said[-3:])
    run.cancel()


async def test_silence_asks_again_once_then_moves_on():
    interviewer, voice, output, script = make(None, questions=2, answer_timeout_s=0.3)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    question = BANK.get(interviewer.state.question_ids[0])
    await script.until_listening()  # the re-ask
    assert "Take your time" in voice.text() and voice.said[-1][1] == question.text
    await script.until_listening()  # the second question
    assert output.questions[-1][0] == 2
    assert interviewer.state.asked[0].unanswered
    run.cancel()


async def test_barge_in_backchannel_resumes_and_real_speech_stops():
    interviewer, voice, output, script = make(None, questions=1, answer_timeout_s=5)
    run = asyncio.ensure_future(interviewer.run())
    # During the greeting: "yeah" pauses the voice, then it resumes.
    while not voice.speaking:
        await asyncio.sleep(0.002)
    await script.says("Yeah.")
    await asyncio.sleep(0.05)
    assert voice.pauses == 1
    await script.until_listening()
    greeting_final = [a for a in output.agent if a[2] and a[3] == "greeting"][0]
    assert greeting_final[4] is False  # not interrupted
    assert interviewer.state.current.answer_seqs == []  # "yeah" is not an answer

    # Now the answer, then cut the follow-up off with real speech.
    await script.says(ANSWER)
    while not (voice.speaking and interviewer.state.phase == "follow_up"):
        await asyncio.sleep(0.002)
    await script.says("Actually let me add that reads are lock free because the map is copied on write.", partial=True)
    await asyncio.wait_for(run, 5)  # one question: after that answer the interview closes
    cut = [a for a in output.agent if a[2] and a[3] == "follow_up"][0]
    assert cut[4] is True  # the follow-up was interrupted
    assert [line.interrupted for line in interviewer.state.conversation if line.kind == "follow_up"] == [True]
    # What cut the interviewer off is the answer to the follow-up, not lost.
    assert interviewer.state.asked[0].answer_seqs == [2, 3]


async def test_thats_all_ends_the_turn_without_waiting_for_the_pause():
    interviewer, voice, output, script = make(None, questions=2, turn_pause_s=30.0)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    await script.says("A process has its own memory and threads share it, and that's all.")
    await script.until_listening(timeout=3.0)  # far less than the 30 s pause
    assert output.questions[-1][3] is True  # a follow-up (stock: no LLM)
    run.cancel()


async def test_state_survives_json_and_resumes_at_the_open_question():
    interviewer, voice, output, script = make(None, questions=2)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    run.cancel()
    saved = InterviewState.from_json(output.saved[-1])
    assert saved.phase == LISTENING and len(saved.asked) == 1

    voice2, output2 = FakeVoice(), FakeOutput()
    resumed = Interviewer(
        bank=BANK, role_title="Software engineer", state=saved, voice=voice2, output=output2,
        llm=None, config=InterviewConfig(turn_pause_s=0.1, answer_timeout_s=5),
    )
    run2 = asyncio.ensure_future(resumed.run())
    await Script(resumed, output2).until_listening()
    assert "Welcome back" in voice2.said[0][1]
    assert output2.questions[0][0] == 1  # the same question again, not the next
    assert "greeting" not in output2.turns
    run2.cancel()


@pytest.mark.parametrize("text", ["uh", "", "Um, uh.", "Mm-hmm."])
async def test_fillers_alone_are_not_an_answer(text):
    interviewer, voice, output, script = make(None, questions=1, answer_timeout_s=0.4)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    await script.says(text)
    await script.until_listening()  # asked again: nothing counted as an answer
    assert "Take your time" in voice.text()
    assert interviewer.state.current.answer_seqs == []
    run.cancel()


async def test_turn_pause_runs_from_the_end_of_speech_not_from_the_final():
    """A slow final must not add its decode time to the pause: the turn ends as soon as it arrives."""
    interviewer, voice, output, script = make(None, questions=2, turn_pause_s=0.3, max_follow_ups=0)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    heard = interviewer.heard
    heard(HeardSpeechStart(1))
    await asyncio.sleep(0.01)
    heard(HeardSpeechEnd(1, dropped=False))
    await asyncio.sleep(0.5)  # the decode is slow: the pause has run out meanwhile
    said = len(voice.said)
    final_at = asyncio.get_running_loop().time()
    heard(HeardFinal(1, 1, ANSWER))
    while len(voice.said) == said:
        await asyncio.sleep(0.002)
    assert asyncio.get_running_loop().time() - final_at < 0.15  # not another 0.3 s
    run.cancel()


async def test_a_lost_final_does_not_hang_the_turn(monkeypatch):
    monkeypatch.setattr("earshot.agents.turn_taking.FINAL_WAIT_S", 0.2)
    interviewer, voice, output, script = make(None, questions=1, answer_timeout_s=0.5)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    interviewer.heard(HeardSpeechStart(1))
    interviewer.heard(HeardSpeechEnd(1, dropped=False))  # the ASR failed: no final follows
    await script.until_listening(timeout=3)  # asked again after the silence
    assert "Take your time" in voice.text()
    run.cancel()


async def test_a_voice_onset_pauses_at_once_and_a_click_resumes():
    from earshot.agents.inbox import HeardVoice

    interviewer, voice, output, script = make(None, questions=1, answer_timeout_s=5)
    run = asyncio.ensure_future(interviewer.run())
    while not voice.speaking:
        await asyncio.sleep(0.002)
    interviewer.heard(HeardVoice(1.0))  # a click: no speech start follows
    assert voice._paused and voice.pauses == 1
    await asyncio.sleep(0.35)
    assert not voice._paused  # resumed: the greeting goes on
    interviewer.heard(HeardVoice(2.0))  # real speech this time
    assert voice._paused
    await script.says("Hello, hi there, nice to meet you and thanks for having me.")
    await script.until_listening()
    greeting = [a for a in output.agent if a[2] and a[3] == "greeting"][0]
    assert greeting[4] is True  # cut off by the candidate
    run.cancel()


async def _time_to_reply(ends: Sequence[HeardSpeechEnd], texts: Sequence[str], **config) -> Optional[float]:
    """Candidate utterances ending as given, each with its final; seconds from the last final to the interviewer's next words."""
    interviewer, voice, output, script = make(None, questions=2, max_follow_ups=0, **config)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    heard, loop = interviewer.heard, asyncio.get_running_loop()
    said = len(voice.said)
    for seq, (end, text) in enumerate(zip(ends, texts), start=1):
        heard(HeardSpeechStart(end.utterance_id))
        await asyncio.sleep(0.01)
        heard(end)
        heard(HeardFinal(seq, end.utterance_id, text))
    final_at = loop.time()
    try:
        while len(voice.said) == said:
            if loop.time() - final_at > 1.5:
                return None
            await asyncio.sleep(0.002)
        return loop.time() - final_at
    finally:
        run.cancel()


async def test_a_complete_turn_is_taken_after_the_reply_gap_not_the_turn_pause():
    complete = HeardSpeechEnd(1, dropped=False, ended_by="model", turn_complete=True)
    waited = await _time_to_reply([complete], [ANSWER], turn_pause_s=0.6, reply_gap_s=0.2)
    assert waited is not None and 0.18 <= waited < 0.35
    at_once = await _time_to_reply([complete], [ANSWER], turn_pause_s=0.6, reply_gap_s=0.0)
    assert at_once is not None and at_once < 0.1


@pytest.mark.parametrize(
    "fragment",
    [
        "Printing, then, for our purpose.",  # the model took the comma pause for the end
        "Can I have a hint?",  # "It is of the first importance | ...": the head read a hint request in the fragment
    ],
    ids=["answer", "command"],
)
async def test_a_voice_back_within_the_reply_gap_keeps_the_turn(fragment):
    """The model ended the turn at a comma pause and the candidate goes on: no reply, no command, one answer."""
    interviewer, voice, output, script = make(None, questions=2, max_follow_ups=0, reply_gap_s=0.3)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    heard = interviewer.heard
    said = len(voice.said)
    heard(HeardSpeechStart(1))
    await asyncio.sleep(0.01)
    heard(HeardSpeechEnd(1, dropped=False, ended_by="model", turn_complete=True))
    heard(HeardFinal(1, 1, fragment))
    await asyncio.sleep(0.15)
    heard(HeardSpeechStart(2))  # within the gap
    await asyncio.sleep(0.5)
    assert len(voice.said) == said  # still the candidate's turn
    heard(HeardSpeechEnd(2, dropped=False, ended_by="model", turn_complete=True))
    heard(HeardFinal(2, 2, "May be considered as the art of making books."))
    await script.until_listening()  # the next question: one answer of both finals
    assert interviewer.state.asked[0].answer_seqs == [1, 2]
    assert "here is a hint" not in voice.text().lower()
    run.cancel()


async def test_an_end_by_the_silence_rule_still_waits_the_turn_pause():
    by_silence = HeardSpeechEnd(1, dropped=False, ended_by="silence")  # silence mode, or the model failed
    waited = await _time_to_reply([by_silence], [ANSWER], turn_pause_s=0.6)
    assert waited is not None and waited >= 0.55


async def test_a_complete_turn_of_fillers_only_is_no_answer():
    mm = HeardSpeechEnd(1, dropped=False, ended_by="model", turn_complete=True)
    assert await _time_to_reply([mm], ["Mm."], answer_timeout_s=5) is None  # still listening


async def test_a_short_utterance_ends_no_turn_until_the_rest_of_the_fallback():
    complete_then_short = [
        HeardSpeechEnd(1, dropped=False, ended_by="length"),  # a long answer cut for length: it goes on
        HeardSpeechEnd(2, dropped=False, ended_by="short"),
    ]
    waited = await _time_to_reply(complete_then_short, [ANSWER, "Yes."], turn_pause_s=0.05, short_turn_wait_s=0.5)
    assert waited is not None and waited >= 0.45


@pytest.mark.parametrize(
    "after",
    [
        [HeardSpeechEnd(2, dropped=True, ended_by="short")],  # a click
        # noise the VAD took for speech, in which Whisper found no words: its no-final ends the wait for a final
        [HeardSpeechEnd(2, dropped=False, ended_by="model", turn_complete=True), HeardNoFinal(2)],
    ],
    ids=["click", "noise-with-no-words"],
)
async def test_a_sound_after_a_complete_turn_does_not_hold_the_reply(after):
    complete = HeardSpeechEnd(1, dropped=False, ended_by="model", turn_complete=True)
    interviewer, voice, output, script = make(None, questions=2, max_follow_ups=0, short_turn_wait_s=2.0)
    run = asyncio.ensure_future(interviewer.run())
    await script.until_listening()
    heard, loop = interviewer.heard, asyncio.get_running_loop()
    said = len(voice.said)
    heard(HeardSpeechStart(1))
    await asyncio.sleep(0.01)
    heard(complete)
    heard(HeardSpeechStart(2))  # the sound opens an utterance before the answer's final is in
    heard(HeardFinal(1, 1, ANSWER))
    for item in after:
        heard(item)
    at = loop.time()
    while len(voice.said) == said and loop.time() - at < 1.5:
        await asyncio.sleep(0.002)
    run.cancel()
    assert loop.time() - at < 0.3  # not short_turn_wait_s, nor FINAL_WAIT_S (5 s) for a final that never comes


async def test_barge_in_by_noise_with_no_words_resumes_at_once():
    interviewer, voice, output, script = make(None, questions=1, answer_timeout_s=5)
    run = asyncio.ensure_future(interviewer.run())
    while not voice.speaking:
        await asyncio.sleep(0.002)
    heard, loop = interviewer.heard, asyncio.get_running_loop()
    heard(HeardSpeechStart(1))
    await asyncio.sleep(0.05)
    assert voice._paused
    heard(HeardSpeechEnd(1, dropped=False))
    heard(HeardNoFinal(1))
    at = loop.time()
    while voice._paused and loop.time() - at < 5.0:
        await asyncio.sleep(0.002)
    assert not voice._paused and loop.time() - at < 0.3  # resumed, not stopped after BARGE_IN_DECISION_S
    await script.until_listening()
    greeting = [a for a in output.agent if a[2] and a[3] == "greeting"][0]
    assert greeting[4] is False  # not interrupted
    run.cancel()

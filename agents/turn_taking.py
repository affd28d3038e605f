"""Turn-taking: when the candidate's turn ends, and the reply made ready during the pause.

The pipeline says, at the end of every utterance, why it ended (server/endpointing.py):

* `turn_complete` (`--endpointing model`): the end-of-turn model heard a
  finished turn, or the fallback silence ran out. The turn ends `reply_gap_s`
  (200 ms) after the end of speech, or when the final is in if that is later:
  a candidate who goes on within the gap (the model takes some comma pauses
  for an end) keeps the turn and is not talked over.
* ended by the silence rule (`--endpointing silence`, or the model failed on
  this turn): the turn ends `turn_pause_s` later if no new speech comes.
* too short to ask the model about (a cough, "mm"): never ends the turn at
  once; it ends `short_turn_wait_s` later (the rest of the fallback silence)
  if no new speech comes.
* cut for length: the speaker goes on; nothing to wait for.

The turn also ends at once on "that's all", and on a command ("repeat",
"hint", "skip", "stop") `reply_gap_s` after it is heard unless the candidate
goes on (then it was the start of an answer, cut at a comma), and as silence
when nothing is said for `answer_timeout_s`.
An end with no words in it (only fillers) is no answer: listening goes on.

Waits are counted from the end of speech (the pipeline's verdict), not from
the final's arrival, so the final's decode time overlaps the wait instead of
adding to it. The turn still waits for that final, or for word that none is
coming (noise Whisper found no words in, a failed decode); FINAL_WAIT_S
bounds that wait should the word be lost.

The reply is prepared *during* the pause: the follow-up is generated and
synthesised (agents/followup_speech.py) as soon as a final arrives, and
thrown away if the candidate goes on. The cached acknowledgement ("Thank
you.") is what is heard first, so the turn can be taken before the LLM is done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from earshot.agents.commands import Command, command_for, is_filler_only, strip_done_phrase
from earshot.agents.followup_speech import FollowUpSpeech, PreparedFollowUp
from earshot.agents.inbox import HeardFinal, HeardNoFinal, HeardSpeechEnd, HeardSpeechStart, Inbox
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.question_bank import Question

# Longest wait for the final (or the HeardNoFinal) of an utterance that ended: a safety net, both always come.
FINAL_WAIT_S = 5.0


@dataclass
class TurnEnd:
    kind: str  # "answer" | "silent" | "command"
    finals: list[HeardFinal]
    command: Optional[Command] = None
    reply: Optional[PreparedFollowUp] = None  # None: the answer gets no follow-up


class Listener:
    def __init__(self, *, inbox: Inbox, follow_ups: FollowUpSpeech, config: InterviewConfig) -> None:
        self._inbox = inbox
        self._follow_ups = follow_ups
        self._config = config

    async def listen(self, question: Question) -> TurnEnd:
        """Collect the candidate's turn, preparing the reply while they may still go on."""
        finals: list[HeardFinal] = []
        speaking = False
        awaiting_finals = 0  # utterances that ended and whose final has not come yet
        pause_from: Optional[float] = None  # when the candidate last stopped speaking
        turn_wait: Optional[float] = None  # after pause_from, how long until the turn is over; None: no end seen yet
        complete_before = False  # the last end, short ones aside, said the turn was complete
        reply: Optional[PreparedFollowUp] = None
        # A command ("repeat", "skip"...) is acted on reply_gap_s after it is heard, unless the candidate goes
        # on: then it was the start of an answer the end-of-turn model cut at a comma ("It is of the first importance").
        command_heard: Optional[tuple[Command, HeardFinal, float]] = None
        loop = asyncio.get_running_loop()
        silence_deadline = loop.time() + self._config.answer_timeout_s

        def drop_reply() -> None:
            nonlocal reply
            if reply is not None:
                reply.speech.cancel()
            reply = None

        while True:
            if speaking:
                timeout = None
            elif command_heard is not None:
                timeout = max(0.0, command_heard[2] + self._config.reply_gap_s - loop.time())
            elif awaiting_finals:  # bounded: a decode that failed sends no final
                timeout = max(0.0, (pause_from or loop.time()) + FINAL_WAIT_S - loop.time())
            elif finals and turn_wait is not None:
                timeout = max(0.0, (pause_from or loop.time()) + turn_wait - loop.time())
            else:
                timeout = max(0.0, silence_deadline - loop.time())
            item = await self._inbox.get(timeout=timeout)
            if item is None:  # the pause or the silence ran out
                if command_heard is not None:
                    return TurnEnd("command", finals, command=command_heard[0])
                if awaiting_finals:
                    awaiting_finals = 0
                    continue
                if finals:
                    return TurnEnd("answer", finals, reply=reply)
                return TurnEnd("silent", finals)
            if isinstance(item, HeardSpeechStart):
                if command_heard is not None:  # they went on: no command, the start of an answer
                    if not is_filler_only(command_heard[1].text):
                        finals.append(command_heard[1])
                    command_heard = None
                speaking = True
                pause_from = None
                turn_wait = None
                drop_reply()  # they went on: the answer is not complete
            elif isinstance(item, HeardSpeechEnd):
                speaking = False
                pause_from = loop.time()
                turn_wait = self._turn_wait(item)
                if item.ended_by == "short" and complete_before:
                    # A click or a cough after a complete turn: the turn is still over, the reply still wanted.
                    turn_wait = self._config.reply_gap_s
                    if reply is None and finals:
                        reply = self._prepare_reply(question, finals)
                else:
                    complete_before = item.turn_complete
                if item.dropped:
                    silence_deadline = max(silence_deadline, loop.time() + self._config.turn_pause_s)
                else:
                    awaiting_finals += 1
            elif isinstance(item, HeardNoFinal):
                awaiting_finals = max(0, awaiting_finals - 1)  # no words in it: as if it had not been said
            elif isinstance(item, HeardFinal):
                awaiting_finals = max(0, awaiting_finals - 1)
                if pause_from is None and not speaking:
                    pause_from = loop.time()  # a final heard over the interviewer's voice: no end seen here
                    turn_wait = self._config.turn_pause_s
                # The head judges a short final alone: once this turn holds an answer, a final is more of it (a
                # barge-in sentence cut in two), and only the word patterns may still make it a command.
                command = command_for(item.text, () if finals else item.intents)
                if command in (Command.REPEAT, Command.HINT, Command.SKIP, Command.STOP):
                    drop_reply()
                    command_heard = (command, HeardFinal(item.seq, item.utterance_id, item.text), loop.time())
                    continue
                text = strip_done_phrase(item.text) if command is Command.DONE else item.text
                if not is_filler_only(text):
                    finals.append(HeardFinal(item.seq, item.utterance_id, text))
                if command is Command.DONE:
                    if not finals:
                        return TurnEnd("silent", finals)
                    drop_reply()
                    return TurnEnd("answer", finals, reply=self._prepare_reply(question, finals))
                if finals:
                    drop_reply()
                    reply = self._prepare_reply(question, finals)
                silence_deadline = loop.time() + self._config.answer_timeout_s

    def _turn_wait(self, end: HeardSpeechEnd) -> Optional[float]:
        """How long after this end of speech, with no new speech, the candidate's turn is over (None: not from it)."""
        if end.turn_complete:
            return self._config.reply_gap_s
        if end.ended_by == "silence":
            return self._config.turn_pause_s
        if end.ended_by == "short":
            return self._config.short_turn_wait_s
        return None  # cut for length (the speaker goes on) or the stream ended

    def _prepare_reply(self, question: Question, finals: list[HeardFinal]) -> Optional[PreparedFollowUp]:
        return self._follow_ups.prepare(question, " ".join(f.text.strip() for f in finals))

"""Turn-taking: when the candidate's turn ends, and the reply made ready during the pause.

The candidate's turn ends `turn_pause_s` after a final with no new speech, at
once when they say "that's all" or give a command ("repeat", "hint", "skip",
"stop"), or as silence when nothing is said for `answer_timeout_s`.

The turn pause is counted from the end of speech (the VAD's verdict), not
from the final's arrival, so the final's decode time overlaps the pause
instead of adding to it. The turn still waits for that final, at most
FINAL_WAIT_S (a decode that failed sends none).

The reply is prepared *during* the pause: the follow-up is generated and
synthesised (agents/followup_speech.py) as soon as a final arrives, and
thrown away if the candidate goes on, so the pause hides the LLM and TTS time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from earshot.agents.commands import Command, command_for, is_filler_only, strip_done_phrase
from earshot.agents.followup_speech import FollowUpSpeech, PreparedFollowUp
from earshot.agents.inbox import HeardFinal, HeardSpeechEnd, HeardSpeechStart, Inbox
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.question_bank import Question

# Longest wait for the final of an utterance that ended (an ASR failure sends none).
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
        reply: Optional[PreparedFollowUp] = None
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
                    return TurnEnd("answer", finals, reply=reply)
                return TurnEnd("silent", finals)
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
                    return TurnEnd("command", finals, command=command)
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

    def _prepare_reply(self, question: Question, finals: list[HeardFinal]) -> Optional[PreparedFollowUp]:
        return self._follow_ups.prepare(question, " ".join(f.text.strip() for f in finals))

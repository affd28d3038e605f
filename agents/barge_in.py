"""Speaking while hearing the candidate: barge-in.

When the candidate starts speaking while the interviewer talks, the voice is
paused on the next audio frame: already at the VAD's first hint of a voice
(60 ms), and resumed if no speech start follows within ONSET_CONFIRM_S, so a
click costs a blip and not a stop. Once speech has started:

* a backchannel ("yeah", "uh-huh", a cough the ASR finds no words in) resumes
  the voice where it stopped, and is forgotten;
* anything else (a partial of a few words, a final, or no verdict within
  BARGE_IN_DECISION_S) stops it for good; the reply is recorded as
  interrupted and what the candidate said is the start of their turn.

Everything heard while speaking, bar a backchannel, goes back into the inbox
for the next listen.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from earshot.agents.commands import command_for, is_backchannel
from earshot.agents.inbox import Heard, HeardFinal, HeardNoFinal, HeardPartial, HeardSpeechEnd, HeardSpeechStart, Inbox
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.interview_state import AgentLine, InterviewState
from earshot.agents.ports import InterviewOutput, PreparedSpeech, Sentences, SpeechResult, Voice

# While paused for a possible barge-in, stop for good if no verdict comes by then.
BARGE_IN_DECISION_S = 4.0
# After a voice onset, how long a speech start may take before the pause is undone.
ONSET_CONFIRM_S = 0.25
# A partial with this many words, not all backchannel, is the candidate taking the turn.
BARGE_IN_PARTIAL_WORDS = 2
# Kinds of speech about the current question (counted in its record's prompts).
PROMPT_KINDS = ("question", "follow_up", "repeat", "hint")


class Speaker:
    def __init__(
        self,
        *,
        inbox: Inbox,
        state: InterviewState,
        voice: Voice,
        output: InterviewOutput,
        config: InterviewConfig,
    ) -> None:
        self._inbox = inbox
        self._state = state
        self._voice = voice
        self._out = output
        self._config = config
        self._onset_timer: Optional[asyncio.TimerHandle] = None  # undoes a pause made on a mere onset
        self._verdict_pending = False  # play() holds the voice paused until it decides

    # --- called from the event loop as the candidate is heard; must return at once ----------
    def voice_onset(self) -> None:
        """A voice may be starting: pause now, undo it unless speech is confirmed soon."""
        if self._config.barge_in and self._voice.speaking and self._onset_timer is None:
            self._voice.pause()  # silence on the next frame, before the VAD is sure
            loop = asyncio.get_running_loop()
            self._onset_timer = loop.call_later(ONSET_CONFIRM_S, self._onset_not_confirmed)

    def speech_started(self) -> None:
        if self._onset_timer is not None:
            self._onset_timer.cancel()  # confirmed: play() decides from here
            self._onset_timer = None
        if self._config.barge_in and self._voice.speaking:
            self._voice.pause()  # silence on the next frame; the verdict comes in play()

    def _onset_not_confirmed(self) -> None:
        self._onset_timer = None
        if not self._verdict_pending:
            self._voice.resume()  # a click, not speech: go on talking

    # --- speaking ---------------------------------------------------------------------------
    async def say(self, kind: str, sentences: Sentences) -> SpeechResult:
        return await self.play(kind, self._voice.prepare(sentences))

    async def play(self, kind: str, speech: PreparedSpeech) -> SpeechResult:
        """Speak, handling barge-in; what the candidate said meanwhile is kept for the next listen."""
        st = self._state
        utterance_id = st.next_agent_utterance()
        if st.current is not None and kind in PROMPT_KINDS:
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
            self._verdict_pending = barge_utterance is not None
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
            elif isinstance(item, (HeardFinal, HeardNoFinal)) or (isinstance(item, HeardSpeechEnd) and item.dropped):
                text, intents = (item.text, item.intents) if isinstance(item, HeardFinal) else ("", ())
                if is_backchannel(text) and command_for(text, intents) is None:
                    carried = [c for c in carried if getattr(c, "utterance_id", None) != barge_utterance]
                    self._voice.resume()
                else:
                    self._voice.stop()
                barge_utterance = None
        result = await playing
        self._verdict_pending = False
        if barge_utterance is not None:
            self._voice.resume()  # the reply ended on its own before the verdict
        self._out.agent_text(utterance_id, "", True, kind, interrupted=result.interrupted)
        st.remember(AgentLine(utterance_id, kind, result.text.strip(), result.interrupted, result.spoken_text.strip()))
        self._out.save(st)
        self._inbox.put_back(carried)
        return result


def _takes_the_turn(partial_text: str) -> bool:
    words = partial_text.split()
    return len(words) >= BARGE_IN_PARTIAL_WORDS and not is_backchannel(partial_text)

"""When is the speaker done? The end of an utterance, and of a turn, decided during a pause.

Two ways, chosen by `--endpointing`:

* `silence` - the VAD's timer: `end_of_speech_ms` of silence ends an
  utterance; the interviewer then waits `turn_pause_ms` more with no speech
  before it takes the turn (agents/turn_taking.py). Every reply waits both.
* `model` - the end-of-turn model (models/turn_model.py, Smart Turn v3) hears
  the utterance so far, trailing silence included, at short silences
  (`end_of_turn_checks_ms`, 200 ms by default). When it calls the turn
  complete, the utterance ends there and the turn with it: the final (whose
  decode the speculative pause already started) and the interviewer's reply
  follow at once. When it calls it incomplete the utterance stays open
  through the pause, so a speaker who stops to think is neither cut into two
  finals nor talked over; if nothing more is said, the VAD ends the utterance,
  and the turn, at `end_of_turn_fallback_ms` of silence.

The model hears audio only. On read speech it often takes a short pause
after "in the middle of" for a finished turn, so when it says complete the
words of the utterance so far (its speculative final decode, started at
180 ms of silence and usually done by then) are checked too: a turn whose
words stop on "the", "of", "and", "um"... is held (models/turn_text.py;
`--end-of-turn-check-words`). This costs no reply time: the turn waits for
that final anyway.

In an assist call (`hold_unfinished_turns=False`: two people talk, Earshot
takes no turn) the model only ends utterances sooner: an unfinished pause
still ends at `end_of_speech_ms`, so utterances are cut as in silence mode,
and a pause after a digit group is left to that rule (a number read out in
groups stays in one final, where redaction sees it whole).

In model mode an utterance with less than `end_of_turn_min_speech_ms` of voice
(a cough, "mm", a click) is never asked about (webrtcvad's hangover counts
about 0.2 s more than the sound: 500 ms is about 0.3 s of it): the silence rule ends it and it
ends no turn. A model call that fails or takes longer than
`end_of_turn_timeout_ms` sends one `turn_model_failed` error; that utterance
then ends by the silence rule, as in `silence` mode, and the call goes on.

The model runs in a worker thread (`asyncio.to_thread`), never on the event
loop: about 90 ms of one core per call on the 2-core reference machine
(models/turn_model.py). One call at a time per track; a check that falls due
while one is running is asked when it answers.

Every utterance's end says why it ended and whether the turn is over
(`UtteranceEnd`, which the pipeline puts on the `speech_end` event).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from earshot.models.turn_model import EndOfTurnModel
from earshot.models.turn_text import ends_on_a_number, sounds_unfinished
from earshot.models.vad import VadSegmenter, VadSpeechEnd
from earshot.server.protocol import EndOfTurnCheck

log = logging.getLogger(__name__)

ENDPOINTING_MODES = ("model", "silence")


@dataclass(frozen=True)
class EndpointingConfig:
    mode: str = "silence"  # one of ENDPOINTING_MODES
    end_of_speech_ms: int = 500  # the silence rule: silence mode, short utterances, a failed model
    checks_ms: tuple[int, ...] = (200,)  # model mode: silences at which the model is asked, ascending
    threshold: float = 0.9  # model mode: complete above this (pipecat uses 0.5; bench/turn_sweep.py chose 0.9)
    fallback_ms: int = 2500  # model mode: the silence that ends a turn the model keeps calling incomplete
    min_speech_ms: int = 500  # model mode: less voice (VAD-counted, ~0.2 s over the sound) is never asked about, ends no turn
    timeout_s: float = 1.0  # model mode: a slower model call counts as failed
    check_words: bool = True  # model mode: hold a "complete" turn whose words so far stop mid-phrase (models/turn_text.py)
    hold_numbers: bool = False  # and one whose words stop on a digit group (where no turn is taken: assist calls)

    def __post_init__(self) -> None:
        if self.mode not in ENDPOINTING_MODES:
            raise ValueError(f"endpointing must be one of {ENDPOINTING_MODES}, not {self.mode!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), not {self.threshold}")

    @property
    def vad_end_of_speech_ms(self) -> int:
        """The silence after which the VAD itself ends an utterance: in model mode, the fallback."""
        return self.fallback_ms if self.mode == "model" else self.end_of_speech_ms


@dataclass(frozen=True)
class UtteranceEnd:
    """Why an utterance ended (protocol.ENDED_BY) and whether the speaker's turn ended with it."""

    ended_by: str
    turn_complete: bool
    checks: tuple[EndOfTurnCheck, ...] = ()


class Endpointer:
    """One track's end-of-turn decisions. `poll` after each push of audio; `classify` each end the VAD made itself."""

    def __init__(
        self,
        config: EndpointingConfig,
        vad: VadSegmenter,
        model: Optional[EndOfTurnModel],
        end_utterance: Callable[[VadSpeechEnd, UtteranceEnd], None],
        model_failed: Callable[[str], None],
        heard_so_far: Optional[Callable[[], Awaitable[Optional[str]]]] = None,  # the utterance's words up to now
    ) -> None:
        if config.mode == "model" and model is None:
            raise ValueError("endpointing model needs the end-of-turn model loaded")
        self.config = config
        self._vad = vad
        self._model = model
        self._end_utterance = end_utterance
        self._model_failed = model_failed
        self._heard_so_far = heard_so_far if config.check_words else None
        self._utterance = 0  # counts the VAD's utterances, so a late answer cannot end the next one
        self._pause_end_s: Optional[float] = None  # last voiced frame before the current pause
        self._next_check = 0  # index into checks_ms for the current pause
        self._checks: list[EndOfTurnCheck] = []
        self._failed = False  # the model failed on this utterance: the silence rule ends it
        self._asking: Optional[asyncio.Task] = None

    # --- the utterance's life -------------------------------------------------------
    def begin(self) -> None:
        """The VAD opened an utterance."""
        self._utterance += 1
        self._pause_end_s = None
        self._next_check = 0
        self._checks = []
        self._failed = False

    def classify(self, ended: VadSpeechEnd, stream_end: bool = False) -> UtteranceEnd:
        """An end the VAD made on its own (its silence ran out, a length cut, the stream's end)."""
        checks = tuple(self._checks)
        self._utterance += 1  # answers still in flight belong to an utterance that is over
        if ended.forced:
            return UtteranceEnd("length", False, checks)
        if stream_end:
            return UtteranceEnd("stream_end", False, checks)
        if self.config.mode == "silence":
            return UtteranceEnd("silence", False, checks)
        if ended.voiced_ms < self.config.min_speech_ms:
            return UtteranceEnd("short", False, checks)
        if self.config.fallback_ms <= self.config.end_of_speech_ms:
            return UtteranceEnd("silence", False, checks)  # unfinished pauses are not held (assist calls)
        return UtteranceEnd("fallback", True, checks)

    def poll(self) -> None:
        """After new audio: ask the model at a due check, or end the utterance by the silence rule."""
        vad = self._vad
        if self.config.mode != "model" or not vad.in_speech or vad.trailing_silence_ms == 0:
            return
        silence_ms = vad.trailing_silence_ms
        if vad.last_voiced_end_s != self._pause_end_s:  # a new pause: its checks start again
            self._pause_end_s = vad.last_voiced_end_s
            self._next_check = 0
        if self._failed or vad.voiced_ms < self.config.min_speech_ms:
            if silence_ms >= self.config.end_of_speech_ms:
                self._end("silence" if self._failed else "short", turn_complete=False)
            return
        checks = self.config.checks_ms
        if self._next_check >= len(checks) or silence_ms < checks[self._next_check]:
            return
        if self._asking is not None and not self._asking.done():
            return  # one call at a time: this check is asked when that one answers (it polls again)
        while self._next_check < len(checks) and silence_ms >= checks[self._next_check]:
            self._next_check += 1  # one call for every check that is due
        self._asking = asyncio.ensure_future(self._ask(self._utterance, self._pause_end_s, silence_ms, vad.open_audio()))

    async def decided(self) -> None:
        """Wait for the model call in flight, if any: a file fed faster than real time then gets the decisions a live call gets."""
        if self._asking is not None and not self._asking.done():
            await asyncio.wait({self._asking})

    def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()

    # --- the model ----------------------------------------------------------------
    async def _ask(self, utterance: int, pause_end_s: Optional[float], silence_ms: int, audio: bytes) -> None:
        assert self._model is not None
        try:
            verdict = await asyncio.wait_for(asyncio.to_thread(self._model.predict, audio), self.config.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout or the model's own error: this utterance ends by silence
            if utterance != self._utterance:
                return
            what = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"failed ({type(exc).__name__})"
            log.warning("end-of-turn model %s: this turn ends by the silence rule", what, exc_info=not isinstance(exc, asyncio.TimeoutError))
            self._failed = True
            self._model_failed(f"the end-of-turn model {what}; this turn ends after {self.config.end_of_speech_ms} ms of silence")
            self.poll()
            return
        complete = verdict.probability > self.config.threshold
        held = complete and await self._words_unfinished()
        if utterance != self._utterance:
            self.poll()  # that utterance already ended; the open one may have a check due
            return
        check = EndOfTurnCheck(silence_ms, round(verdict.probability, 4), round(verdict.inference_s, 4), held)
        self._checks.append(check)
        still_paused = self._vad.in_speech and self._vad.last_voiced_end_s == pause_end_s
        if complete and not held and still_paused:
            self._end("model", turn_complete=True)
        else:
            self.poll()  # a later check may already be due

    async def _words_unfinished(self) -> bool:
        """Whether the words heard so far stop mid-phrase; False when they are not known in time."""
        if self._heard_so_far is None:
            return False
        try:
            text = await asyncio.wait_for(self._heard_so_far(), self.config.timeout_s)
        except asyncio.TimeoutError:
            return False
        return text is not None and (sounds_unfinished(text) or (self.config.hold_numbers and ends_on_a_number(text)))

    def _end(self, ended_by: str, turn_complete: bool) -> None:
        checks = tuple(self._checks)
        self._utterance += 1
        self._end_utterance(self._vad.end_now(), UtteranceEnd(ended_by, turn_complete, checks))

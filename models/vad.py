"""Voice activity detection: cut a stream of 16 kHz PCM into utterances.

webrtcvad labels each 10/20/30 ms frame voiced or not. A small state machine
on top of it decides where utterances begin and end:

* Two voiced frames in a row outside an utterance send `VadOnset`: maybe
  the start of speech, maybe a click. It is only a hint, for reacting fast
  (the interviewer falls silent at once when it is talked over).
* An utterance opens when at least `speech_start_ms` of the last 150 ms were
  voiced. The `pre_roll_ms` before that are kept, so a clipped first syllable
  still reaches Whisper.
* Once `pause_hint_ms` of silence follow the last voiced frame, a `VadPause`
  event tells the transcriber it may start decoding the final early; a voiced
  frame after that sends `VadResume`.
* After `end_of_speech_ms` of silence the utterance ends (`VadSpeechEnd`),
  or sooner when the caller decides the speaker is done (`end_now`: the
  end-of-turn model, server/endpointing.py, does this during a pause).
* An utterance longer than `max_utterance_s` ends at the next short pause, or
  at once when it reaches the hard limit, since Whisper sees 30 s at most.

webrtcvad alone hears too much voice: it adapts to a quiet room until some of
its noise sounds like speech, and its hangover calls the ~0.1 s after a word
voiced too. So a frame it calls voiced counts as voice only when it is within
`noise_gate_db` of the stream's speech level (`SpeechLevel`: the 90th
percentile of its recent voice frames' RMS). On the end-of-turn set
(bench/turn_set.py, quiet at RMS 30), 40 dB drops 73 % of the frames webrtcvad
called voiced in pauses and after answers, and 2.5 % of those inside speech
(mostly soft onsets, which the pre-roll and the 150 ms tail keep anyway).

Times are seconds of audio since the stream began (plus `clock_offset_s`, so a
resumed session continues its clock).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Union

import numpy as np
import webrtcvad

from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE

START_WINDOW_MS = 150
TAIL_KEPT_MS = 150  # silence kept after the last voiced frame; Whisper ends words better with it
HARD_LIMIT_EXTRA_S = 1.5  # past max_utterance_s, how long to wait for a gap before cutting anyway


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2
    frame_ms: int = 30
    speech_start_ms: int = 90
    pre_roll_ms: int = 300
    end_of_speech_ms: int = 500
    max_utterance_s: float = 25.0
    noise_gate_db: float = 40.0  # a voiced frame this far below the speech level is noise (0: off)

    @property
    def pause_hint_ms(self) -> int:
        # Early enough to hide most of the final decode inside the end-of-speech wait,
        # late enough that the gaps between words rarely trigger it.
        return min(180, self.end_of_speech_ms // 2)


@dataclass(frozen=True)
class VadOnset:
    at_s: float  # start of the first of the voiced frames


ONSET_FRAMES = 2  # consecutive voiced frames for a VadOnset: one alone is too often a click

LEVEL_FRAMES = 300  # voice frames the speech level is taken over (9 s of voice at 30 ms)
LEVEL_PERCENTILE = 90
LEVEL_MIN_FRAMES = 10  # fewer voice frames than this: no level yet, no gate
LEVEL_EVERY = 10  # recompute the percentile every this many voice frames


class SpeechLevel:
    """How loud this stream's voice is: the 90th percentile of its recent voice frames' RMS, in dB."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=LEVEL_FRAMES)
        self._since_update = 0
        self.db: float = -math.inf  # -inf until LEVEL_MIN_FRAMES voice frames were heard

    def add(self, frame_db: float) -> None:
        self._recent.append(frame_db)
        self._since_update += 1
        if len(self._recent) >= LEVEL_MIN_FRAMES and (self._since_update >= LEVEL_EVERY or self.db == -math.inf):
            self.db = float(np.percentile(np.fromiter(self._recent, float), LEVEL_PERCENTILE))
            self._since_update = 0


def frame_db(frame: bytes) -> float:
    """RMS of int16 PCM in dB (full scale is about 90 dB); digital silence is -inf."""
    samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
    power = float(np.dot(samples, samples)) / max(1, len(samples))
    return 10 * math.log10(power) if power > 0 else -math.inf


@dataclass(frozen=True)
class VadSpeechStart:
    start_s: float  # first voiced frame
    audio_start_s: float  # start of the kept audio, pre-roll included


@dataclass(frozen=True)
class VadPause:
    end_s: float  # end of the last voiced frame


@dataclass(frozen=True)
class VadResume:
    at_s: float


@dataclass(frozen=True)
class VadSpeechEnd:
    start_s: float
    end_s: float  # end of the last voiced frame
    audio_start_s: float
    audio: bytes  # pre-roll + speech + a short tail, 16 kHz int16
    voiced_ms: int
    forced: bool  # cut by max_utterance_s, not by silence


VadEvent = Union[VadOnset, VadSpeechStart, VadPause, VadResume, VadSpeechEnd]


class VadSegmenter:
    """Feed PCM of any length with `push`; get the utterance boundaries it crossed."""

    def __init__(self, config: VadConfig, clock_offset_s: float = 0.0) -> None:
        if config.frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30")
        self.config = config
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._level = SpeechLevel()
        self._frame_bytes = SAMPLE_RATE * config.frame_ms // 1000 * BYTES_PER_SAMPLE
        self._frame_s = config.frame_ms / 1000
        self._clock_offset_s = clock_offset_s
        self._frames_seen = 0
        self._leftover = b""

        window_frames = START_WINDOW_MS // config.frame_ms
        self._start_window: deque[bool] = deque(maxlen=window_frames)
        self._start_needed = max(1, -(-config.speech_start_ms // config.frame_ms))
        pre_roll_frames = config.pre_roll_ms // config.frame_ms
        self._recent: deque[bytes] = deque(maxlen=pre_roll_frames + window_frames)

        self._in_speech = False
        self._voiced_run = 0  # consecutive voiced frames while no utterance is open
        self._utterance = bytearray()
        self._audio_start_s = 0.0
        self._start_s = 0.0
        self._last_voiced_end_s = 0.0
        self._voiced_frames = 0
        self._trailing_silent_frames = 0
        self._paused = False

    # --- public -------------------------------------------------------------
    @property
    def now_s(self) -> float:
        """Audio clock: end of the last frame examined."""
        return self._clock_offset_s + self._frames_seen * self._frame_s

    @property
    def trailing_silence_ms(self) -> int:
        """Silence since the last voiced frame of the open utterance."""
        return self._trailing_silent_frames * self.config.frame_ms if self._in_speech else 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def voiced_ms(self) -> int:
        """Voiced audio in the open utterance so far."""
        return self._voiced_frames * self.config.frame_ms if self._in_speech else 0

    @property
    def last_voiced_end_s(self) -> float:
        """End of the open utterance's last voiced frame: names the current pause (it changes when voice comes back)."""
        return round(self._last_voiced_end_s, 3)

    def utterance_audio(self) -> bytes:
        """The open utterance so far, up to a short tail after its last voiced frame."""
        return bytes(self._utterance[: self._bytes_through_tail()])

    def open_audio(self) -> bytes:
        """The open utterance so far with all the silence after its last voiced frame (what an end-of-turn model hears)."""
        return bytes(self._utterance)

    def end_now(self) -> VadSpeechEnd:
        """End the open utterance here, as if the end-of-speech silence had run out (its end is still its last voiced frame)."""
        if not self._in_speech:
            raise RuntimeError("end_now() with no open utterance")
        return self._end_utterance(forced=False)

    def push(self, pcm: bytes) -> list[VadEvent]:
        data = self._leftover + pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._leftover = data[usable:]
        events: list[VadEvent] = []
        for offset in range(0, usable, self._frame_bytes):
            events.extend(self._on_frame(data[offset : offset + self._frame_bytes]))
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an open utterance where its voice ended."""
        if not self._in_speech:
            return []
        return [self._end_utterance(forced=False)]

    # --- internals ------------------------------------------------------------
    def _on_frame(self, frame: bytes) -> list[VadEvent]:
        voiced = self._vad.is_speech(frame, SAMPLE_RATE) and self._loud_enough(frame)
        frame_start_s = self.now_s
        self._frames_seen += 1
        self._recent.append(frame)
        if not self._in_speech:
            return self._while_silent(voiced, frame_start_s)
        return self._while_speaking(frame, voiced)

    def _while_silent(self, voiced: bool, frame_start_s: float) -> list[VadEvent]:
        self._start_window.append(voiced)
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        onset: list[VadEvent] = []
        if self._voiced_run == ONSET_FRAMES:
            onset.append(VadOnset(at_s=round(frame_start_s - (ONSET_FRAMES - 1) * self._frame_s, 3)))
        if sum(self._start_window) < self._start_needed:
            return onset
        # Open an utterance: the kept frames become its beginning.
        window = list(self._start_window)
        first_voiced_index = window.index(True)
        window_start_s = frame_start_s - (len(window) - 1) * self._frame_s
        self._in_speech = True
        self._utterance = bytearray(b"".join(self._recent))
        self._audio_start_s = self.now_s - len(self._recent) * self._frame_s
        self._start_s = window_start_s + first_voiced_index * self._frame_s
        self._voiced_frames = sum(window)
        self._last_voiced_end_s = self.now_s
        self._trailing_silent_frames = 0
        self._paused = False
        self._start_window.clear()
        self._voiced_run = 0
        return [*onset, VadSpeechStart(start_s=round(self._start_s, 3), audio_start_s=round(self._audio_start_s, 3))]

    def _while_speaking(self, frame: bytes, voiced: bool) -> list[VadEvent]:
        self._utterance += frame
        events: list[VadEvent] = []
        if voiced:
            self._voiced_frames += 1
            self._last_voiced_end_s = self.now_s
            self._trailing_silent_frames = 0
            if self._paused:
                self._paused = False
                events.append(VadResume(at_s=round(self.now_s - self._frame_s, 3)))
        else:
            self._trailing_silent_frames += 1

        silence_ms = self._trailing_silent_frames * self.config.frame_ms
        length_s = self.now_s - self._audio_start_s
        if silence_ms >= self.config.end_of_speech_ms:
            events.append(self._end_utterance(forced=False))
        elif length_s >= self.config.max_utterance_s + HARD_LIMIT_EXTRA_S or (
            length_s >= self.config.max_utterance_s and silence_ms >= 2 * self.config.frame_ms
        ):
            # Cut a long utterance at the first short gap, or hard, and go on with a new one
            # at once: the speaker has not stopped, so no trigger and no pre-roll are needed.
            events.append(self._end_utterance(forced=True))
            events.append(self._continue_after_cut())
        elif silence_ms >= self.config.pause_hint_ms and not self._paused:
            self._paused = True
            events.append(VadPause(end_s=round(self._last_voiced_end_s, 3)))
        return events

    def _loud_enough(self, frame: bytes) -> bool:
        """A frame webrtcvad called voiced: is it near the stream's speech level (then it feeds the level)?"""
        if self.config.noise_gate_db <= 0:
            return True
        db = frame_db(frame)
        if db == -math.inf:
            return False  # digital silence (webrtcvad's hangover can call it voiced)
        if db < self._level.db - self.config.noise_gate_db:
            return False
        self._level.add(db)
        return True

    def _bytes_through_tail(self) -> int:
        end_s = min(self._last_voiced_end_s + TAIL_KEPT_MS / 1000, self.now_s)
        samples = round((end_s - self._audio_start_s) * SAMPLE_RATE)
        return max(0, samples) * BYTES_PER_SAMPLE

    def _continue_after_cut(self) -> VadSpeechStart:
        self._in_speech = True
        self._audio_start_s = self._start_s = self._last_voiced_end_s = self.now_s
        self._voiced_frames = 0
        return VadSpeechStart(start_s=round(self._start_s, 3), audio_start_s=round(self._audio_start_s, 3))

    def _end_utterance(self, forced: bool) -> VadSpeechEnd:
        ended = VadSpeechEnd(
            start_s=round(self._start_s, 3),
            end_s=round(self._last_voiced_end_s, 3),
            audio_start_s=round(self._audio_start_s, 3),
            audio=self.utterance_audio(),
            voiced_ms=self._voiced_frames * self.config.frame_ms,
            forced=forced,
        )
        self._in_speech = False
        self._utterance = bytearray()
        self._paused = False
        self._trailing_silent_frames = 0
        self._start_window.clear()
        # Frames already in this utterance must not become the next one's pre-roll.
        self._recent.clear()
        return ended

"""Streaming Whisper for one audio stream: when to decode what, and the hypotheses that come back.

The VAD (models/vad.py) cuts the stream into utterances; the pipeline hands
each of its boundaries to a `StreamingAsr`, which decides which decodes to ask
the shared engine for:

* while an utterance is open, a partial decode of it every
  `partial_interval_s` of new audio (one at a time per stream), whose words
  `LocalAgreement` splits into committed and tentative;
* at a short pause (`VadPause`), the utterance so far goes for its final
  decode *speculatively*. If the speaker goes on (`VadResume`) that decode is
  cancelled; if the pause becomes the end of speech, the final is usually
  ready by then, so the wait for end of speech hides the decode time;
* at the end (`VadSpeechEnd`), the speculative decode is used when it heard
  the whole utterance, else a fresh one is asked for.

What comes back (`AsrPartial`, `AsrFinal`, `AsrNoWords`, `AsrFailed`) arrives
through `results()`, finals in utterance order. Every utterance that ended
undropped gets one of the last three, so a listener waiting for its words
never has to guess with a timer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Optional, Union

from earshot.models.asr import SpeechRecognizer, Transcript, Word
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from earshot.models.stabilizer import LocalAgreement
from earshot.models.vad import VadSegmenter, VadSpeechEnd, VadSpeechStart

log = logging.getLogger(__name__)

# Silence after which a partial is no longer started: the speaker may be stopping, and a
# partial started now would hold the engine just when the final is about to need it.
PAUSE_SUSPECTED_MS = 60


@dataclass(frozen=True)
class StreamingConfig:
    partial_interval_s: float = 0.4
    min_speech_ms: int = 250  # an utterance with less voiced audio is dropped: never decoded


@dataclass(frozen=True)
class AsrPartial:
    utterance_id: int
    committed: tuple[str, ...]
    tentative: tuple[str, ...]
    start_s: float  # utterance start
    audio_end_s: float  # end of the audio this hypothesis heard


@dataclass(frozen=True)
class AsrFinal:
    utterance_id: int
    text: str
    start_s: float
    end_s: float  # where the VAD heard the voice end
    words: tuple[Word, ...]  # times on the stream's audio clock
    forced: bool  # cut by the VAD's length limit, not by silence
    queued_s: float
    inference_s: float


@dataclass(frozen=True)
class AsrNoWords:
    """The utterance was decoded and held no words Whisper would stand behind (a cough, noise): no final follows."""

    utterance_id: int


@dataclass(frozen=True)
class AsrFailed:
    utterance_id: int
    message: str


AsrResult = Union[AsrPartial, AsrFinal, AsrNoWords, AsrFailed]
_END = object()


class _Utterance:
    def __init__(self, utterance_id: int, start_s: float, audio_start_s: float) -> None:
        self.id = utterance_id
        self.start_s = start_s
        self.audio_start_s = audio_start_s
        self.stabilizer = LocalAgreement()
        self.partial_task: Optional[asyncio.Task] = None
        self.partial_audio_bytes = 0
        self.speculative_task: Optional[asyncio.Task] = None
        self.speculative_audio_bytes = 0


class StreamingAsr:
    """Decode scheduling for one stream; reads the open utterance's audio from its segmenter."""

    def __init__(
        self,
        engine: SpeechRecognizer,
        stream_id: str,
        config: StreamingConfig,
        segmenter: VadSegmenter,
        first_utterance_id: int = 1,
    ) -> None:
        self._engine = engine
        self._stream_id = stream_id
        self._config = config
        self._segmenter = segmenter
        self._next_utterance_id = first_utterance_id
        self._utterance: Optional[_Utterance] = None
        self._last_final: Optional[asyncio.Task] = None
        self._tasks: set[asyncio.Task] = set()
        self._results: asyncio.Queue = asyncio.Queue()
        self._interval_bytes = int(config.partial_interval_s * SAMPLE_RATE) * BYTES_PER_SAMPLE

    @property
    def next_utterance_id(self) -> int:
        return self._next_utterance_id

    def is_open(self, utterance_id: int) -> bool:
        return self._utterance is not None and self._utterance.id == utterance_id

    # --- the VAD's boundaries --------------------------------------------------------
    def begin(self, start: VadSpeechStart) -> int:
        """An utterance opens; returns its id."""
        self._utterance = _Utterance(self._next_utterance_id, start.start_s, start.audio_start_s)
        self._next_utterance_id += 1
        return self._utterance.id

    def pause(self) -> None:
        """A short silence: decode the final now, in case the speaker has stopped."""
        utterance = self._utterance
        if utterance is None:
            return
        self._cancel(utterance.speculative_task)
        audio = self._segmenter.utterance_audio()
        utterance.speculative_audio_bytes = len(audio)
        utterance.speculative_task = self._spawn(self._engine.transcribe(self._stream_id, audio, final=True))

    async def heard_so_far(self) -> Optional[str]:
        """The text of the open utterance up to now, from its speculative final decode (awaited); None without one.

        None too when the speaker went on after the decode started (it heard too
        little) or the decode failed.
        """
        utterance = self._utterance
        if utterance is None or utterance.speculative_task is None:
            return None
        if utterance.speculative_audio_bytes != len(self._segmenter.utterance_audio()):
            return None
        decode = utterance.speculative_task
        try:
            transcript = await asyncio.shield(decode)
        except asyncio.CancelledError:
            if decode.cancelled():
                return None  # the speaker went on meanwhile
            raise
        except Exception:  # the decode failed: the final path reports it
            return None
        return transcript.text if transcript is not None else None

    def resume(self) -> None:
        """The speaker went on: the speculative final heard too little."""
        if self._utterance is not None:
            self._cancel(self._utterance.speculative_task)
            self._utterance.speculative_task = None

    def end(self, ended: VadSpeechEnd) -> tuple[int, bool]:
        """The utterance ended: its final is decoded unless it was too short. Returns (its id, dropped)."""
        utterance = self._utterance
        if utterance is None:
            raise RuntimeError("end() without begin()")
        self._utterance = None
        self._cancel(utterance.partial_task)
        speculative = utterance.speculative_task
        dropped = ended.voiced_ms < self._config.min_speech_ms
        if dropped:
            self._cancel(speculative)
            return utterance.id, True
        if speculative is not None and utterance.speculative_audio_bytes == len(ended.audio):
            decode = speculative  # the pause became the end: its decode is already under way
        else:
            self._cancel(speculative)
            decode = self._spawn(self._engine.transcribe(self._stream_id, ended.audio, final=True))
        self._last_final = self._spawn(self._finish(utterance, ended, decode, self._last_final))
        return utterance.id, False

    def poll(self) -> None:
        """After new audio: start a partial decode when one is due."""
        utterance = self._utterance
        if utterance is None or utterance.speculative_task is not None:
            return  # no speech, or paused: the final decode is the better use of the engine
        if utterance.partial_task is not None and not utterance.partial_task.done():
            return
        if self._segmenter.trailing_silence_ms >= PAUSE_SUSPECTED_MS:
            return
        audio = self._segmenter.utterance_audio()
        if len(audio) - utterance.partial_audio_bytes < self._interval_bytes:
            return
        utterance.partial_audio_bytes = len(audio)
        utterance.partial_task = self._spawn(self._partial(utterance, audio))

    # --- results ----------------------------------------------------------------------
    async def results(self) -> AsyncIterator[AsrResult]:
        """Hypotheses as they are decoded (finals in utterance order), until `finish()` is done."""
        while (result := await self._results.get()) is not _END:
            yield result

    async def finish(self) -> None:
        """End of stream (the VAD was flushed first): wait for every final, then end `results()`."""
        if self._last_final is not None:
            await asyncio.shield(self._last_final)
        self.abort()

    def abort(self) -> None:
        """Stop at once, dropping the decodes in flight."""
        for task in list(self._tasks):
            task.cancel()
        self._engine.forget_stream(self._stream_id)
        self._results.put_nowait(_END)

    # --- decodes ----------------------------------------------------------------------
    async def _finish(
        self, utterance: _Utterance, ended: VadSpeechEnd, decode: asyncio.Task, previous_final: Optional[asyncio.Task]
    ) -> None:
        try:
            transcript: Optional[Transcript] = await decode
        except Exception:  # the engine failed on this audio: say so, keep the stream going
            log.exception("stream %s: final decode failed", self._stream_id)
            self._results.put_nowait(AsrFailed(utterance.id, "transcription failed for this utterance"))  # detail: logged
            return
        if previous_final is not None:
            await asyncio.shield(previous_final)  # finals leave in utterance order
        if transcript is None or not transcript.text:
            self._results.put_nowait(AsrNoWords(utterance.id))  # nothing was said that Whisper would stand behind
            return
        offset = ended.audio_start_s
        words = tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.probability) for w in transcript.words)
        self._results.put_nowait(
            AsrFinal(
                utterance_id=utterance.id,
                text=transcript.text,
                start_s=ended.start_s,
                end_s=ended.end_s,
                words=words,
                forced=ended.forced,
                queued_s=transcript.queued_s,
                inference_s=transcript.inference_s,
            )
        )

    async def _partial(self, utterance: _Utterance, audio: bytes) -> None:
        try:
            transcript = await self._engine.transcribe(self._stream_id, audio, final=False)
        except Exception:
            log.exception("stream %s: partial decode failed", self._stream_id)
            return  # the final will try again, and report if it fails too
        if transcript is None or self._utterance is not utterance:
            return  # superseded, or the utterance ended meanwhile and its final is coming
        committed, tentative = utterance.stabilizer.update(transcript.text.split())
        if not committed and not tentative:
            return
        audio_end_s = utterance.audio_start_s + len(audio) / (SAMPLE_RATE * BYTES_PER_SAMPLE)
        self._results.put_nowait(
            AsrPartial(utterance.id, tuple(committed), tuple(tentative), utterance.start_s, round(audio_end_s, 3))
        )

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    def _cancel(task: Optional[asyncio.Task]) -> None:
        if task is not None and not task.done():
            task.cancel()

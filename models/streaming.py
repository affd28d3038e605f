"""Streaming transcription of one audio stream: PCM in, utterance results out.

    push(pcm) -> VadSegmenter -> utterance audio -> AsrEngine -> emit(result)

While an utterance is open, a partial decode of it runs every
`partial_interval_s` of new audio (one at a time per stream), and
`LocalAgreement` splits each hypothesis into committed and tentative words.

The final is decoded *speculatively*: as soon as the VAD reports a short pause
(`SpeechPaused`), the utterance so far is sent for its final decode. If the
speaker goes on, that decode is cancelled; if the pause becomes the end of
speech, the final is usually ready by then, so the wait for end of speech
hides the decode time. Finals are emitted in utterance order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Union

from models.asr import AsrEngine, Transcript, Word
from models.stabilizer import LocalAgreement
from models.vad import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadConfig,
    VadSegmenter,
    VoiceOnset,
)

log = logging.getLogger(__name__)

PAUSE_SUSPECTED_MS = 60


@dataclass(frozen=True)
class VoiceDetected:
    """The VAD heard a voice start (two voiced frames); an utterance may or may not follow."""

    at_s: float


@dataclass(frozen=True)
class UtteranceStarted:
    utterance_id: int
    start_s: float


@dataclass(frozen=True)
class PartialResult:
    utterance_id: int
    committed: tuple[str, ...]
    tentative: tuple[str, ...]
    start_s: float  # utterance start
    audio_end_s: float  # end of the audio this hypothesis heard


@dataclass(frozen=True)
class UtteranceEnded:
    utterance_id: int
    start_s: float
    end_s: float
    dropped: bool  # too little voiced audio to be speech


@dataclass(frozen=True)
class FinalResult:
    utterance_id: int
    text: str
    start_s: float
    end_s: float  # where the VAD heard the voice end
    words: tuple[Word, ...]  # times on the stream's audio clock
    forced: bool
    queued_s: float
    inference_s: float


@dataclass(frozen=True)
class AsrFailed:
    utterance_id: int
    message: str


AsrOutput = Union[VoiceDetected, UtteranceStarted, PartialResult, UtteranceEnded, FinalResult, AsrFailed]
Emit = Callable[[AsrOutput], Awaitable[None]]


@dataclass(frozen=True)
class StreamingConfig:
    vad: VadConfig = VadConfig()
    partial_interval_s: float = 0.4
    min_speech_ms: int = 250


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


class StreamingTranscriber:
    def __init__(
        self,
        engine: AsrEngine,
        config: StreamingConfig,
        stream_id: str,
        emit: Emit,
        clock_offset_s: float = 0.0,
        first_utterance_id: int = 1,
    ) -> None:
        self._engine = engine
        self._config = config
        self._stream_id = stream_id
        self._emit = emit
        self._segmenter = VadSegmenter(config.vad, clock_offset_s=clock_offset_s)
        self._next_utterance_id = first_utterance_id
        self._utterance: Optional[_Utterance] = None
        self._last_final: Optional[asyncio.Task] = None
        self._tasks: set[asyncio.Task] = set()
        self._interval_bytes = int(config.partial_interval_s * SAMPLE_RATE) * BYTES_PER_SAMPLE

    @property
    def now_s(self) -> float:
        """The stream's audio clock: seconds of audio pushed so far (plus the resume offset)."""
        return self._segmenter.now_s

    @property
    def next_utterance_id(self) -> int:
        return self._next_utterance_id

    async def push(self, pcm: bytes) -> None:
        for event in self._segmenter.push(pcm):
            await self._on_vad(event)
        self._maybe_start_partial()

    async def close(self) -> None:
        """End of stream: finish the open utterance and wait for every final."""
        for event in self._segmenter.flush():
            await self._on_vad(event)
        if self._last_final is not None:
            await asyncio.shield(self._last_final)
        for task in list(self._tasks):
            task.cancel()
        self._engine.forget_stream(self._stream_id)

    async def abort(self) -> None:
        """Stop at once, dropping work in flight (the session is gone)."""
        for task in list(self._tasks):
            task.cancel()
        self._engine.forget_stream(self._stream_id)

    # --- VAD events -------------------------------------------------------------
    async def _on_vad(self, event) -> None:
        if isinstance(event, VoiceOnset):
            await self._emit(VoiceDetected(event.at_s))
        elif isinstance(event, SpeechStarted):
            self._utterance = _Utterance(self._next_utterance_id, event.start_s, event.audio_start_s)
            self._next_utterance_id += 1
            await self._emit(UtteranceStarted(self._utterance.id, event.start_s))
        elif isinstance(event, SpeechPaused) and self._utterance is not None:
            self._start_speculative_final(self._utterance)
        elif isinstance(event, SpeechResumed) and self._utterance is not None:
            self._cancel(self._utterance.speculative_task)
            self._utterance.speculative_task = None
        elif isinstance(event, SpeechEnded) and self._utterance is not None:
            await self._end_utterance(self._utterance, event)
            self._utterance = None

    async def _end_utterance(self, utterance: _Utterance, ended: SpeechEnded) -> None:
        self._cancel(utterance.partial_task)
        dropped = ended.voiced_ms < self._config.min_speech_ms
        await self._emit(UtteranceEnded(utterance.id, ended.start_s, ended.end_s, dropped))
        speculative = utterance.speculative_task
        if dropped:
            self._cancel(speculative)
            return
        if speculative is not None and utterance.speculative_audio_bytes == len(ended.audio):
            decode = speculative  # the pause became the end: its decode is already under way
        else:
            self._cancel(speculative)
            decode = self._spawn(self._engine.transcribe(self._stream_id, ended.audio, final=True))
        self._last_final = self._spawn(self._finish(utterance, ended, decode, self._last_final))

    async def _finish(
        self,
        utterance: _Utterance,
        ended: SpeechEnded,
        decode: asyncio.Task,
        previous_final: Optional[asyncio.Task],
    ) -> None:
        try:
            transcript: Optional[Transcript] = await decode
        except Exception as exc:  # the engine failed on this audio: say so, keep the stream going
            log.exception("stream %s: final decode failed", self._stream_id)
            await self._emit(AsrFailed(utterance.id, f"transcription failed: {exc}"))
            return
        if previous_final is not None:
            await asyncio.shield(previous_final)  # finals leave in utterance order
        if transcript is None or not transcript.text:
            return  # nothing was said that Whisper would stand behind
        offset = ended.audio_start_s
        words = tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.probability) for w in transcript.words)
        await self._emit(
            FinalResult(
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

    # --- partials and speculation ------------------------------------------------
    def _start_speculative_final(self, utterance: _Utterance) -> None:
        self._cancel(utterance.speculative_task)
        audio = self._segmenter.utterance_audio()
        utterance.speculative_audio_bytes = len(audio)
        utterance.speculative_task = self._spawn(self._engine.transcribe(self._stream_id, audio, final=True))

    def _maybe_start_partial(self) -> None:
        utterance = self._utterance
        if utterance is None or utterance.speculative_task is not None:
            return  # no speech, or paused: the final decode is the better use of the engine
        if utterance.partial_task is not None and not utterance.partial_task.done():
            return
        if self._segmenter.trailing_silence_ms >= PAUSE_SUSPECTED_MS:
            # The speaker may be stopping: a partial started now would hold the engine
            # just when the final is about to need it.
            return
        audio = self._segmenter.utterance_audio()
        if len(audio) - utterance.partial_audio_bytes < self._interval_bytes:
            return
        utterance.partial_audio_bytes = len(audio)
        utterance.partial_task = self._spawn(self._partial(utterance, audio))

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
        await self._emit(
            PartialResult(utterance.id, tuple(committed), tuple(tentative), utterance.start_s, round(audio_end_s, 3))
        )

    # --- task bookkeeping ------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    def _cancel(task: Optional[asyncio.Task]) -> None:
        if task is not None and not task.done():
            task.cancel()

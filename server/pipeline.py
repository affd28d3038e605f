"""A session's audio pipeline: PCM in, client events out.

    transport -> StreamingTranscriber (VAD + Whisper) -> PaceTracker -> events -> sink
                                                    \-> IntentStage (finals) -> intent events -> sink

An assist call runs one pipeline per labelled track (agent, customer); they
share the session's final numbering, and every event names its speaker.

The WebRTC transport and `earshot transcribe` both use this class, so what a
benchmark measures on a file is what a caller gets live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, Optional

from agents.pace import PaceConfig, PaceReport, PaceTracker
from models.asr import AsrConfig, AsrEngine
from models.streaming import (
    AsrFailed,
    AsrOutput,
    FinalResult,
    PartialResult,
    StreamingConfig,
    StreamingTranscriber,
    UtteranceEnded,
    UtteranceStarted,
    VoiceDetected,
)
from models.vad import VadConfig
from server import events
from server.intents import Classify, IntentStage
from server.settings import Settings

EventSink = Callable[[events.Event], Awaitable[None]]


def asr_config(settings: Settings) -> AsrConfig:
    return AsrConfig(
        model=settings.asr_model,
        device=settings.asr_device,
        compute_type=settings.asr_compute_type,
        threads=settings.asr_threads,
        workers=settings.asr_workers,
        language=settings.asr_language,
        beam_size=settings.asr_beam_size,
        beam_max_s=settings.asr_beam_max_s,
        no_speech_threshold=settings.asr_no_speech_threshold,
        log_prob_threshold=settings.asr_log_prob_threshold,
        compression_ratio_threshold=settings.asr_compression_ratio_threshold,
        trim_window=settings.asr_trim_window,
        scheduling=settings.asr_scheduling,
        max_batch=settings.asr_max_batch,
        speech_check_ms=settings.min_speech_ms,
        cache_dir=settings.data_dir,
    )


def streaming_config(settings: Settings) -> StreamingConfig:
    return StreamingConfig(
        vad=VadConfig(
            aggressiveness=settings.vad_aggressiveness,
            frame_ms=settings.vad_frame_ms,
            speech_start_ms=settings.speech_start_ms,
            pre_roll_ms=settings.pre_roll_ms,
            end_of_speech_ms=settings.end_of_speech_ms,
            max_utterance_s=settings.max_utterance_s,
        ),
        partial_interval_s=settings.partial_interval_ms / 1000,
        min_speech_ms=settings.min_speech_ms,
    )


def pace_config(settings: Settings) -> PaceConfig:
    return PaceConfig(
        min_wps=settings.pace_min_wps,
        max_wps=settings.pace_max_wps,
        window_s=settings.pace_window_s,
        long_pause_s=settings.long_pause_s,
    )


@dataclass(frozen=True)
class ResumePoint:
    """Where a session continues after a reconnect (all zero/one for a new one)."""

    audio_s: float = 0.0
    next_utterance_id: int = 1
    next_final_seq: int = 1


@dataclass(frozen=True)
class IntentOptions:
    """Which label set a session's utterances are classified with, and by what."""

    classify: Classify
    label_set: str
    partials: bool = False


def final_numbers(first: int = 1) -> Iterator[int]:
    """The session's final numbering, shared by the pipelines of its tracks."""
    seq = first
    while True:
        yield seq
        seq += 1


class SessionPipeline:
    def __init__(
        self,
        session_id: str,
        engine: AsrEngine,
        settings: Settings,
        sink: EventSink,
        resume: ResumePoint = ResumePoint(),
        speaker: str = "",
        intents: Optional[IntentOptions] = None,
        seq_numbers: Optional[Iterator[int]] = None,
    ) -> None:
        self.session_id = session_id
        self.speaker = speaker
        self._sink = sink
        self._settings = settings
        self._pace = PaceTracker(pace_config(settings))
        self._seq_numbers = seq_numbers if seq_numbers is not None else final_numbers(resume.next_final_seq)
        self._intents: Optional[IntentStage] = None
        if intents is not None:
            self._intents = IntentStage(
                session_id, intents.classify, intents.label_set, sink, speaker=speaker, partials=intents.partials
            )
        self._transcriber = StreamingTranscriber(
            engine,
            streaming_config(settings),
            stream_id=session_id,
            emit=self._on_asr,
            clock_offset_s=resume.audio_s,
            first_utterance_id=resume.next_utterance_id,
        )

    @property
    def audio_s(self) -> float:
        return self._transcriber.now_s

    @property
    def next_utterance_id(self) -> int:
        return self._transcriber.next_utterance_id

    async def push(self, pcm16: bytes) -> None:
        await self._transcriber.push(pcm16)

    async def close(self) -> None:
        """End of audio: the open utterance gets its final (and its intent) before this returns."""
        await self._transcriber.close()
        if self._intents is not None:
            await self._intents.close()

    async def abort(self) -> None:
        await self._transcriber.abort()
        if self._intents is not None:
            await self._intents.close()

    async def _on_asr(self, output: AsrOutput) -> None:
        now = round(self._transcriber.now_s, 3)
        sid, speaker = self.session_id, self.speaker
        if isinstance(output, VoiceDetected):
            await self._sink(events.VoiceOnset(sid, output.at_s, now, speaker))
        elif isinstance(output, UtteranceStarted):
            self._pace.on_utterance_start(output.start_s)
            await self._sink(events.SpeechStart(sid, output.utterance_id, output.start_s, now, speaker))
        elif isinstance(output, PartialResult):
            committed, tentative = " ".join(output.committed), " ".join(output.tentative)
            await self._sink(events.Partial(sid, output.utterance_id, committed, tentative, output.audio_end_s, now, speaker))
            text = (committed + " " + tentative).strip()
            await self._send_pace(self._pace.on_partial(text, output.start_s, output.audio_end_s), now)
            if self._intents is not None:
                self._intents.partial(output.utterance_id, committed, now)
        elif isinstance(output, UtteranceEnded):
            await self._sink(
                events.SpeechEnd(sid, output.utterance_id, output.start_s, output.end_s, output.dropped, now, speaker)
            )
        elif isinstance(output, FinalResult):
            seq = next(self._seq_numbers)
            words = [events.FinalWord(w.text, w.start, w.end, w.probability) for w in output.words]
            await self._sink(
                events.Final(
                    sid, seq, output.utterance_id, output.text, output.start_s, output.end_s, words,
                    speech_end_audio_s=output.end_s,
                    emitted_audio_s=now,
                    asr_queued_s=output.queued_s,
                    asr_inference_s=output.inference_s,
                    speaker=speaker,
                )
            )
            if self._intents is not None:
                self._intents.final(output.utterance_id, output.text, now)
            report = self._pace.on_final(output.text, output.words, output.start_s, output.end_s)
            await self._send_pace(report, now)
        elif isinstance(output, AsrFailed):
            detail = {"utterance_id": output.utterance_id, "speaker": speaker}
            await self._sink(events.Error(sid, code="asr_failed", message=output.message, detail=detail))

    async def _send_pace(self, report: PaceReport, now: float) -> None:
        await self._sink(
            events.Pace(
                self.session_id,
                wps=report.wps,
                window_wps=report.window_wps,
                window_s=report.window_s,
                verdict=report.verdict,
                fillers=report.fillers,
                filler_counts=report.filler_counts,
                long_pauses=report.long_pauses,
                total_words=report.total_words,
                voiced_s=report.voiced_s,
                final=report.final,
                min_wps=self._settings.pace_min_wps,
                max_wps=self._settings.pace_max_wps,
                emitted_audio_s=now,
                speaker=self.speaker,
            )
        )

"""One inbound track's pipeline, assembled: an audio frame in, wire events out.

    frame --FrameResampler--> 16 kHz PCM --VadSegmenter--> boundaries (Vad*)
        pauses --Endpointer (end-of-turn model, or silence)--> utterance and turn ends
        boundaries --StreamingAsr--> decode requests --AsrEngine (shared)--> hypotheses (Asr*)
        hypotheses --TranscriptRedaction--> redacted text (tags for personal data)
        boundaries and redacted hypotheses --> wire events (protocol) --> publish
                                      \\-> PaceTracker --> pace events
                                      \\-> IntentStage (finals) --> intent events

Read it in two halves. `push` is the input half: each chunk of PCM goes
through the VAD, and each boundary it crosses becomes an event and, for the
ASR, a decode to schedule. `_publish_hypotheses` is the output half: the
partials and finals the engine returns become events, with pace and intents.
Each stage takes typed records in and hands typed records on:

    stage           records                                   module
    segmentation    VadOnset VadSpeechStart VadPause          models/vad.py
                    VadResume VadSpeechEnd
    end of turn     UtteranceEnd                              server/endpointing.py
    transcription   AsrPartial AsrFinal AsrNoWords AsrFailed  models/streaming.py
    redaction       RedactedFinal                             server/redaction_stage.py
    the wire        VoiceOnset SpeechStart Partial SpeechEnd  server/protocol.py
                    Final NoFinal Pace Intent Error

A live call runs one pipeline per inbound track (an assist call's agent and
customer tracks each get one, sharing the call's final numbering), and
`earshot transcribe` runs one over a file, so what a benchmark measures on a
file is what a caller gets live.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import av

from earshot.agents.pace import PaceReport, PaceTracker
from earshot.models.asr import SpeechRecognizer
from earshot.models.audio import FrameResampler
from earshot.models.streaming import AsrFailed, AsrFinal, AsrNoWords, AsrPartial, StreamingAsr
from earshot.models.turn_model import EndOfTurnModel
from earshot.models.vad import VadEvent, VadOnset, VadPause, VadResume, VadSegmenter, VadSpeechEnd, VadSpeechStart
from earshot.server import protocol
from earshot.server.configs import endpointing_config, pace_config, streaming_config, vad_config
from earshot.server.endpointing import Endpointer, UtteranceEnd
from earshot.server.intent_stage import IntentOptions, IntentStage
from earshot.server.redaction_stage import RedactionOptions, TranscriptRedaction
from earshot.server.settings import Settings

Publish = Callable[[protocol.Event], None]


@dataclass(frozen=True)
class ResumePoint:
    """Where a session continues after a reconnect (all zero/one for a new one)."""

    audio_s: float = 0.0
    next_utterance_id: int = 1
    next_final_seq: int = 1


def final_numbers(first: int = 1) -> Iterator[int]:
    """The session's final numbering, shared by the pipelines of its tracks."""
    seq = first
    while True:
        yield seq
        seq += 1


class TrackPipeline:
    def __init__(
        self,
        session_id: str,
        engine: SpeechRecognizer,
        settings: Settings,
        publish: Publish,
        resume: ResumePoint = ResumePoint(),
        speaker: str = "",  # agent | customer in an assist call; empty for a single-speaker call
        intents: Optional[IntentOptions] = None,
        seq_numbers: Optional[Iterator[int]] = None,
        redaction: Optional[RedactionOptions] = None,
        end_of_turn: Optional[EndOfTurnModel] = None,  # needed with endpointing model
        hold_unfinished_turns: bool = True,  # False in assist calls (ModeKind)
        on_audio: Optional[Callable[[bytes], None]] = None,  # the 16 kHz PCM of each frame (the call's recording)
    ) -> None:
        self.session_id = session_id
        self.speaker = speaker
        self._publish = publish
        self._settings = settings
        self._resample = FrameResampler()
        endpointing = endpointing_config(settings, hold_unfinished_turns)
        self._vad = VadSegmenter(vad_config(settings, endpointing), clock_offset_s=resume.audio_s)
        self._asr = StreamingAsr(engine, session_id, streaming_config(settings), self._vad, resume.next_utterance_id)
        self._endpointer = Endpointer(
            endpointing, self._vad, end_of_turn, self._on_boundary, self._end_of_turn_failed, self._asr.heard_so_far
        )
        self._pace = PaceTracker(pace_config(settings))
        self._redaction = TranscriptRedaction(redaction)
        self._intents = IntentStage(session_id, intents, publish, speaker) if intents is not None else None
        self._seq_numbers = seq_numbers if seq_numbers is not None else final_numbers(resume.next_final_seq)
        self._on_audio = on_audio
        self._closing = False  # close() flushes the VAD: an utterance it ends ends with the stream
        self._output = asyncio.ensure_future(self._publish_hypotheses())

    @property
    def audio_s(self) -> float:
        """The track's audio clock: seconds of audio pushed so far (plus the resume offset)."""
        return self._vad.now_s

    @property
    def next_utterance_id(self) -> int:
        return self._asr.next_utterance_id

    # --- the input half: audio -> boundaries -> decode requests -------------------------
    def push_frame(self, frame: av.AudioFrame) -> None:
        """One decoded WebRTC frame (48 kHz Opus, any layout)."""
        pcm = self._resample(frame)
        if self._on_audio is not None:
            self._on_audio(pcm)
        self.push(pcm)

    def push(self, pcm: bytes) -> None:
        """16 kHz mono int16 PCM of any length."""
        for boundary in self._vad.push(pcm):
            self._on_boundary(boundary)
        self._endpointer.poll()  # in a pause: ask the end-of-turn model, or end a short utterance
        self._asr.poll()  # a partial decode, when enough new audio has come

    async def decided(self) -> None:
        """Wait until the end-of-turn decision in flight (if any) is made; for input faster than real time."""
        await self._endpointer.decided()

    def _on_boundary(self, boundary: VadEvent, end: Optional[UtteranceEnd] = None) -> None:
        """One boundary the VAD crossed; `end` is given when the endpointer ended the utterance itself."""
        sid, speaker, now = self.session_id, self.speaker, self._now()
        if isinstance(boundary, VadOnset):
            self._publish(protocol.VoiceOnset(sid, boundary.at_s, now, speaker))
        elif isinstance(boundary, VadSpeechStart):
            utterance_id = self._asr.begin(boundary)
            self._endpointer.begin()
            self._pace.on_utterance_start(boundary.start_s)
            self._publish(protocol.SpeechStart(sid, utterance_id, boundary.start_s, now, speaker))
        elif isinstance(boundary, VadPause):
            self._asr.pause()
        elif isinstance(boundary, VadResume):
            self._asr.resume()
        elif isinstance(boundary, VadSpeechEnd):
            end = end or self._endpointer.classify(boundary, stream_end=self._closing)
            utterance_id, dropped = self._asr.end(boundary)
            self._publish(
                protocol.SpeechEnd(
                    sid, utterance_id, boundary.start_s, boundary.end_s, dropped, now, speaker,
                    ended_by=end.ended_by, turn_complete=end.turn_complete and not dropped,
                    end_of_turn_checks=list(end.checks),
                )
            )

    def _end_of_turn_failed(self, message: str) -> None:
        detail = {"speaker": self.speaker, "fallback": "silence"}
        self._publish(protocol.Error(self.session_id, code="turn_model_failed", message=message, detail=detail))
    # --- the output half: hypotheses -> events ------------------------------------------
    async def _publish_hypotheses(self) -> None:
        sid, speaker = self.session_id, self.speaker
        async for hypothesis in self._asr.results():
            now = self._now()
            if isinstance(hypothesis, AsrPartial):
                if not self._asr.is_open(hypothesis.utterance_id):
                    continue  # its utterance ended while it waited here: the final is coming
                committed, tentative = " ".join(hypothesis.committed), " ".join(hypothesis.tentative)
                pace_text = f"{committed} {tentative}".strip()  # pace counts what was said, tags or not
                committed, tentative = await self._redaction.partial(committed, tentative)
                if not self._asr.is_open(hypothesis.utterance_id):
                    continue  # it ended while the redactor ran
                self._publish(
                    protocol.Partial(sid, hypothesis.utterance_id, committed, tentative, hypothesis.audio_end_s, now, speaker)
                )
                self._publish_pace(self._pace.on_partial(pace_text, hypothesis.start_s, hypothesis.audio_end_s), now)
                if self._intents is not None:
                    self._intents.partial(hypothesis.utterance_id, committed, now)
            elif isinstance(hypothesis, AsrFinal):
                redacted = await self._redaction.final(hypothesis.text, hypothesis.words)
                self._publish(
                    protocol.Final(
                        sid, next(self._seq_numbers), hypothesis.utterance_id, redacted.text,
                        hypothesis.start_s, hypothesis.end_s,
                        [protocol.FinalWord(w.text, w.start, w.end, w.probability) for w in redacted.words],
                        speech_end_audio_s=hypothesis.end_s,
                        emitted_audio_s=now,
                        asr_queued_s=hypothesis.queued_s,
                        asr_inference_s=hypothesis.inference_s,
                        speaker=speaker,
                        redact_s=redacted.redact_s,
                        raw_text=redacted.raw_text,
                    )
                )
                if self._intents is not None:
                    self._intents.final(hypothesis.utterance_id, redacted.text, now)
                report = self._pace.on_final(hypothesis.text, hypothesis.words, hypothesis.start_s, hypothesis.end_s)
                self._publish_pace(report, now)
            elif isinstance(hypothesis, AsrNoWords):
                self._publish(protocol.NoFinal(sid, hypothesis.utterance_id, "no_words", now, speaker))
            elif isinstance(hypothesis, AsrFailed):
                detail = {"utterance_id": hypothesis.utterance_id, "speaker": speaker}
                self._publish(protocol.Error(sid, code="asr_failed", message=hypothesis.message, detail=detail))
                self._publish(protocol.NoFinal(sid, hypothesis.utterance_id, "asr_failed", now, speaker))

    def _publish_pace(self, report: PaceReport, now: float) -> None:
        self._publish(
            protocol.Pace(
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

    def _now(self) -> float:
        return round(self._vad.now_s, 3)

    # --- the end ------------------------------------------------------------------------
    async def close(self) -> None:
        """End of audio: the open utterance gets its final (and its intent) before this returns."""
        self._closing = True
        self._endpointer.close()
        for boundary in self._vad.flush():
            self._on_boundary(boundary)
        await self._asr.finish()
        await self._output
        if self._intents is not None:
            await self._intents.close()

    async def abort(self) -> None:
        """The call is gone: drop the decodes in flight."""
        self._endpointer.close()
        self._asr.abort()
        await asyncio.wait({self._output}, timeout=1.0)  # it ends once the queued hypotheses are out
        if self._intents is not None:
            await self._intents.close()

"""Whole-recording transcription with a (bigger) Whisper, after the call: re-scoring's ASR.

Live, each utterance is decoded as the VAD cuts it, by the small model that
keeps up (tiny.en). After the call there is no deadline: a track's whole audio
goes to faster-whisper's own `transcribe`, with its Silero VAD skipping the
silences (where the other side of a call speaks) and beam search on every
segment. The model is loaded once per process (`load_file_whisper`, cached by
its directory and settings) and is not the live engine's: re-scoring never
takes a live call's decode slot.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.models.audio import SAMPLE_RATE
from earshot.models.model_files import whisper_model_dir


@dataclass(frozen=True)
class FileAsrConfig:
    model: str = "base"  # a bundled name (base, tiny.en) or a CTranslate2 Whisper directory
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 0  # 0: CTranslate2's default (all cores)
    language: str = "en"
    beam_size: int = 5
    cache_dir: Path = Path(".earshot")  # where Whisper base's two halves are joined


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio given
    end: float
    text: str


@functools.lru_cache(maxsize=2)
def _model(model_dir: str, device: str, compute_type: str, threads: int):  # -> faster_whisper.WhisperModel
    from faster_whisper import WhisperModel

    return WhisperModel(model_dir, device=device, compute_type=compute_type, cpu_threads=threads, local_files_only=True)


class FileWhisper:
    """One loaded Whisper for whole files; `transcribe` blocks (run it in a thread)."""

    def __init__(self, config: FileAsrConfig) -> None:
        self.config = config
        self.model_dir = whisper_model_dir(config.model, config.cache_dir)  # ModelMissingError names the package
        self._model = _model(str(self.model_dir), config.device, config.compute_type, config.threads)

    @property
    def name(self) -> str:
        return self.config.model

    def transcribe(self, pcm16: bytes) -> list[Segment]:
        """16 kHz mono int16 audio -> its segments, with times in seconds from its start."""
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        if audio.size < SAMPLE_RATE // 10:
            return []
        segments, _info = self._model.transcribe(
            audio,
            language=self.config.language,
            beam_size=self.config.beam_size,
            vad_filter=True,  # faster-whisper's bundled Silero: a track is mostly the other side's silence
            condition_on_previous_text=False,  # one misheard segment does not lead the next astray
        )
        return [Segment(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in segments if s.text.strip()]

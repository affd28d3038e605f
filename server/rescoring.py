"""Re-scoring a recorded call: its tracks decrypted, transcribed again by a bigger Whisper, intents and topic redone.

    rescore_call(session_id, settings) -> Rescored     (what the analytics worker calls after a call)

    recording_files.parts --open_part (decrypt)--> encoded audio --read_audio--> 16 kHz PCM per part
        --FileWhisper (rescore_asr_model, default the packaged Whisper base)--> segments, per track
        --> one transcript, both tracks by time --> redacted as the mode's live finals are (redact_<mode>)
        --> intents (the mode's label set, the encoder service)
                                                  --> topic (assist: agents/topic.py, as live, over every final)

The transcript is redacted with the mode's kinds before anything reads it, as
live finals are: what the worker stores or hands an LLM carries tags, never
the card number that was said. A session without a recording raises NotRecorded; one whose files do not
decrypt or decode raises RecordingUnreadable (both RecordingError): the
worker skips or dead-letters the call. Whisper and the encoder load once per
process (`Rescorer.shared`); decoding runs in a worker thread, never on the
event loop.

What `earshot rescore` printed for tests' call-1 (24 s, two tracks) on the 2-core
dev VM is in tests/test_recording.py's docstring.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from earshot.agents.topic import TopicDetector, TopicList
from earshot.models.audio import SAMPLE_RATE, AudioFormatError, read_audio
from earshot.models.file_asr import FileWhisper
from earshot.server.at_rest import Sealer
from earshot.server.configs import file_asr_config, redacted_kinds
from earshot.server.encoder_service import EncoderService
from earshot.server.modes import MODE_KINDS
from earshot.server.recording import SINGLE_TRACK
from earshot.server.redaction_stage import Redacts
from earshot.server.recording_files import (
    NotRecorded,
    RecordingError,
    RecordingUnreadable,
    open_part,
    parts,
    read_manifest,
    session_dir,
)
from earshot.server.settings import Settings
from earshot.server.storage_keys import KeySource, StorageKeyError

__all__ = ["NotRecorded", "RecordingError", "RecordingUnreadable", "Rescored", "Rescorer", "rescore_call"]


@dataclass(frozen=True)
class Utterance:
    speaker: str  # agent | customer in an assist call; empty for a single-speaker call (as live finals)
    start: float  # seconds on the session's audio clock
    end: float
    text: str
    intents: list[str] = field(default_factory=list)  # the labels that are on, best first


@dataclass(frozen=True)
class Topic:
    name: str
    label: str
    score: float


@dataclass(frozen=True)
class Rescored:
    session_id: str
    mode: str
    model: str  # the Whisper that re-transcribed it
    transcript: list[Utterance]
    intent_counts: dict[str, int]  # label -> finals it is on for
    topic: Optional[Topic]  # None: the mode has no topic, or nothing was said
    audio_s: float  # audio decoded, all tracks together
    decode_s: float  # wall time of the Whisper decodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Rescorer:
    """The models re-scoring needs, loaded once: the file Whisper, the encoder (intents), the topics, the redactor."""

    def __init__(
        self, whisper: FileWhisper, encoders: EncoderService, topics: TopicList, redactor: Optional[Redacts]
    ) -> None:
        self.whisper = whisper
        self.encoders = encoders
        self.topics = topics
        self.redactor = redactor  # None: no mode redacts (the settings' redact_*)

    @classmethod
    def load(cls, settings: Settings, encoders: Optional[EncoderService] = None) -> "Rescorer":
        """ModelMissingError / StartupError / TopicError name what is missing.

        `encoders`: an encoder service the caller already loaded (the analytics worker's), used instead
        of loading a second copy of the sentence encoder.
        """
        from earshot.server.serve_command import load_redactor  # the server's own loader: Presidio only when needed

        topics = TopicList.load(Path(settings.assist_topics).expanduser() if settings.assist_topics else None)
        encoders = encoders if encoders is not None else EncoderService.load(settings)
        return cls(FileWhisper(file_asr_config(settings)), encoders, topics, load_redactor(settings))

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def shared(settings: Settings, encoders: Optional[EncoderService] = None) -> "Rescorer":
        """One per process and settings: what `rescore_call` uses when it is given none."""
        return Rescorer.load(settings, encoders)


async def rescore_call(
    session_id: str, settings: Settings, rescorer: Optional[Rescorer] = None, encoders: Optional[EncoderService] = None
) -> Rescored:
    """Re-transcribe a recorded call and redo its intents and topic; RecordingError when it cannot.

    Without `rescorer`, the process's shared one is loaded on the first recorded call (with `encoders`
    when given, so the sentence encoder is not loaded twice).
    """
    found = parts(settings, session_id)  # NotRecorded
    manifest = read_manifest(session_dir(settings, session_id))
    mode = manifest.mode if manifest is not None else ""
    sealer = _sealer(settings)  # RecordingUnreadable before any model loads
    if rescorer is None:
        rescorer = await asyncio.to_thread(Rescorer.shared, settings, encoders)
    utterances: list[Utterance] = []
    audio_s = decode_s = 0.0
    for part in found:
        pcm = await asyncio.to_thread(_decrypted_audio, sealer, session_id, part.path)
        started = time.perf_counter()
        segments = await asyncio.to_thread(rescorer.whisper.transcribe, pcm)
        decode_s += time.perf_counter() - started
        audio_s += len(pcm) / 2 / SAMPLE_RATE
        speaker = "" if part.track == SINGLE_TRACK else part.track
        utterances += [
            Utterance(speaker, round(part.offset_s + s.start, 3), round(part.offset_s + s.end, 3), s.text)
            for s in segments
        ]
    utterances.sort(key=lambda u: (u.start, u.speaker))
    # A recording whose mode is unknown (no manifest) loses what any mode's transcripts lose.
    kinds = redacted_kinds(settings, mode) if mode in MODE_KINDS else frozenset().union(
        *(redacted_kinds(settings, name) for name in MODE_KINDS)
    )
    if kinds and rescorer.redactor is not None:
        utterances = [
            Utterance(u.speaker, u.start, u.end, (await asyncio.to_thread(rescorer.redactor.redact, u.text, kinds)).text)
            for u in utterances
        ]
    kind = MODE_KINDS.get(mode)
    label_set = kind.intent_label_set if kind is not None else None
    if label_set is not None and rescorer.encoders.intents is not None:
        utterances = [
            Utterance(u.speaker, u.start, u.end, u.text,
                      [label.name for label in (await rescorer.encoders.classify(u.text, label_set)).labels])
            for u in utterances
        ]
    counts = Counter(name for u in utterances for name in u.intents)
    topic = await _topic(rescorer, utterances) if mode == "assist" else None
    return Rescored(
        session_id, mode, rescorer.whisper.name, utterances, dict(counts.most_common()), topic,
        round(audio_s, 3), round(decode_s, 3),
    )


def _sealer(settings: Settings) -> Sealer:
    """The storage keys as they are: re-scoring never makes a key file (a new key would open nothing)."""
    source = KeySource.from_settings(settings)
    stamp = source.stamp()
    try:
        return Sealer(source.load(create=False), source, stamp)
    except StorageKeyError as exc:
        raise RecordingUnreadable(f"the storage keys do not load: {exc}") from None


def _decrypted_audio(sealer: Sealer, session_id: str, path: Path) -> bytes:
    encoded = open_part(sealer, session_id, path)  # RecordingUnreadable
    try:
        return read_audio(io.BytesIO(encoded))
    except AudioFormatError as exc:
        raise RecordingUnreadable(f"{path.name}: decrypts but does not decode: {exc}") from None


async def _topic(rescorer: Rescorer, utterances: list[Utterance]) -> Optional[Topic]:
    """The topic as the live detector would have named it at the call's end, on the better transcript."""
    detector = TopicDetector(rescorer.topics)
    for utterance in utterances:
        detector.add_final(utterance.speaker, utterance.text)
        await detector.update(rescorer.encoders.encode)
    current = detector.current
    return Topic(current.topic, current.label, current.score) if current is not None else None

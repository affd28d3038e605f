"""Opt-in call recording (setting `recording`): each track's audio, encoded and sealed on a thread of its own.

    TrackPipeline (16 kHz mono PCM, as the ASR hears it) --on_audio--> TrackRecorder.push (never blocks)
        --bounded queue--> encoder thread: PyAV FLAC or Ogg Opus --> SealedWriter --> the part's file

The media path only hands PCM over: `push` puts it on a queue of at most
QUEUE_CHUNKS chunks (10 s of 20 ms chunks, 320 kB) and returns; when the
encoder falls that far behind, the chunk is dropped and counted (`dropped_s`),
never waited for. Encoding 16 kHz mono is cheap (FLAC: 5 s of audio in 21 ms,
Opus: in 115 ms on one core of the 2-core dev VM), so a queue that fills means
a stalled disk. At the end of the call `finish` closes the queues and waits for
the threads in a worker thread, off the event loop.

What a call recorded goes into the session record's `recording` field
(`RecordingInfo.to_dict`): tracks, format, seconds per track; GET
/api/sessions/{id} shows it. The files are server/recording_files.py.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import av
import numpy as np

from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from earshot.server.at_rest import Sealer
from earshot.server.recording_files import Manifest, SealedWriter, part_name, session_dir, sweep_expired, write_manifest
from earshot.server.settings import Settings

log = logging.getLogger(__name__)

QUEUE_CHUNKS = 500  # 20 ms chunks waiting for the encoder: 10 s
OPUS_BIT_RATE = 32_000  # speech, mono 16 kHz: transparent enough for Whisper
CODECS = {"flac": ("flac", "flac"), "opus": ("ogg", "libopus")}  # setting -> (container, codec)
SINGLE_TRACK = "caller"  # the file name of a single-speaker call's one track
SWEEP_EVERY_S = 600.0  # expired recordings are deleted at most this late (or a quarter of the retention)


def track_name(speaker: str) -> str:
    return speaker or SINGLE_TRACK


class _Encoder:
    """PCM in, the chosen container out to a SealedWriter (PyAV writes to it as to a file)."""

    def __init__(self, fmt: str, sink: SealedWriter) -> None:
        container, codec = CODECS[fmt]
        self._container = av.open(sink, "w", format=container)
        self._stream = self._container.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        if codec == "libopus":
            self._stream.bit_rate = OPUS_BIT_RATE

    def encode(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()


class TrackRecorder:
    """One track of one call: `push` from the event loop, encoding and sealing on its own thread."""

    def __init__(self, sealer: Sealer, session_id: str, settings: Settings, track: str, offset_s: float) -> None:
        self.track = track
        self.format = settings.recording_format
        self.path = session_dir(settings, session_id) / part_name(track, offset_s, self.format)
        while self.path.exists():  # a call of the session that got no audio left a part at this clock
            offset_s += 0.001
            self.path = self.path.with_name(part_name(track, offset_s, self.format))
        self._queue: queue.Queue[Optional[bytes]] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._writer = SealedWriter(sealer, session_id, self.path)
        self.samples = 0  # recorded
        self.dropped_samples = 0  # not recorded: the encoder was too far behind
        self.failed: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name=f"record-{track}", daemon=True)
        self._thread.start()

    def push(self, pcm: bytes) -> None:
        """Never blocks: a chunk the encoder has no room for is dropped and counted."""
        try:
            self._queue.put_nowait(pcm)
        except queue.Full:
            self.dropped_samples += len(pcm) // BYTES_PER_SAMPLE

    def finish(self) -> None:
        """Blocking: the last chunks encoded and the file closed (deleted when it got no audio). Off the event loop."""
        self._queue.put(None)
        self._thread.join()
        if self.samples == 0 and self.dropped_samples == 0:  # a call that never connected: no part
            self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        try:
            encoder = _Encoder(self.format, self._writer)
            while (pcm := self._queue.get()) is not None:
                encoder.encode(pcm)
                self.samples += len(pcm) // BYTES_PER_SAMPLE
            encoder.close()
            self._writer.close()
        except Exception as exc:  # a full disk, a codec missing from this FFmpeg: the call goes on unrecorded
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("recording %s failed: %s", self.path, self.failed)
            while self._queue.get() is not None:  # let `finish` through
                pass

    @property
    def duration_s(self) -> float:
        return round(self.samples / SAMPLE_RATE, 3)


@dataclass
class RecordingInfo:
    """What the session record says of its recording (summed over the session's calls)."""

    format: str
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)  # track -> duration_s, dropped_s, parts

    def add(self, recorder: TrackRecorder) -> None:
        if recorder.samples == 0 and recorder.dropped_samples == 0 and not recorder.failed:
            return  # no part was kept
        entry = self.tracks.setdefault(recorder.track, {"duration_s": 0.0, "dropped_s": 0.0, "parts": 0})
        entry["duration_s"] = round(entry["duration_s"] + recorder.duration_s, 3)
        entry["dropped_s"] = round(entry["dropped_s"] + recorder.dropped_samples / SAMPLE_RATE, 3)
        entry["parts"] += 1
        if recorder.failed:
            entry["failed"] = recorder.failed

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "tracks": self.tracks,
                "duration_s": max((t["duration_s"] for t in self.tracks.values()), default=0.0)}

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]], fmt: str) -> "RecordingInfo":
        if not data:
            return cls(fmt)
        return cls(data.get("format", fmt), {k: dict(v) for k, v in data.get("tracks", {}).items()})


class CallRecording:
    """A call's recorders, one per track; made only when the setting `recording` is on."""

    def __init__(
        self, sealer: Sealer, settings: Settings, session_id: str, mode: str, created_at: float,
        speakers: list[str], offset_s: float, earlier: Optional[dict[str, Any]] = None,
    ) -> None:
        directory = session_dir(settings, session_id)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_manifest(directory, Manifest(session_id, mode, created_at, settings.recording_format))
        self._earlier = earlier
        self._format = settings.recording_format
        self.recorders = {
            speaker: TrackRecorder(sealer, session_id, settings, track_name(speaker), offset_s) for speaker in speakers
        }

    async def finish(self) -> dict[str, Any]:
        """Close every track's file (off the loop); what the record's `recording` field becomes ({}: nothing yet)."""
        await asyncio.gather(*(asyncio.to_thread(r.finish) for r in self.recorders.values()))
        info = RecordingInfo.from_dict(self._earlier, self._format)
        for recorder in self.recorders.values():
            info.add(recorder)
        return info.to_dict() if info.tracks else {}


async def sweep_recordings(settings: Settings) -> None:
    """Run for the server's life: expired recordings are deleted (also after `recording` was turned off)."""
    every_s = min(SWEEP_EVERY_S, settings.retention_recordings_s / 4)
    while True:
        try:
            removed = await asyncio.to_thread(sweep_expired, settings)
            if removed:
                log.info("recordings past retention deleted: %d sessions", len(removed))
        except OSError as exc:
            log.error("recording sweep failed: %s", exc)
        await asyncio.sleep(every_s)

"""Audio in the one format the pipeline takes: 16 kHz, mono, signed 16-bit PCM.

Everything audio enters through here: WebRTC frames (`FrameResampler`), files
of any format FFmpeg reads (`read_audio`, through PyAV, which aiortc and
faster-whisper already bring), and whole clips at another rate (`resample`,
e.g. the interviewer's voice going out at 48 kHz).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Optional, Union

import av
import numpy as np

SAMPLE_RATE = 16000  # what Whisper and webrtcvad take; the whole pipeline after the transport runs at it
BYTES_PER_SAMPLE = 2


class AudioFormatError(ValueError):
    """The audio is not something the pipeline can take."""


class FrameResampler:
    """Turns decoded WebRTC frames (48 kHz Opus, any layout) into 16 kHz mono int16 bytes.

    Resampling a 20 ms frame takes microseconds, so it runs inline on the event
    loop; the expensive work (Whisper) is what goes to a thread.
    """

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def __call__(self, frame: av.AudioFrame) -> bytes:
        return b"".join(bytes(out.planes[0])[: out.samples * BYTES_PER_SAMPLE] for out in self._resampler.resample(frame))


def read_audio(path: Union[Path, BinaryIO], channel: Optional[int] = None) -> bytes:
    """Decode an audio file as 16 kHz mono int16 bytes: one channel if given, else the mean of all.

    Any container and codec FFmpeg reads: WAV of any sample width, FLAC, MP3,
    M4A/AAC, Ogg/Opus... A file that is not audio raises AudioFormatError
    naming it.
    """
    try:
        with av.open(str(path) if isinstance(path, Path) else path) as container:  # a file, or bytes in memory
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioFormatError(f"{path}: has no audio stream")
            channels = stream.codec_context.channels
            if channels < 1:  # e.g. a text file named .flac: FFmpeg probes a stream it cannot decode
                raise AudioFormatError(f"{path}: not an audio file FFmpeg can read (no audio channels)")
            if channel is not None and not 0 <= channel < channels:
                raise AudioFormatError(f"{path}: has {channels} channel(s), no channel {channel}")
            # Packed s16 at 16 kHz in the file's own layout: channels are chosen or mixed below,
            # as plain numbers, so a 16-bit 16 kHz WAV comes out sample for sample as stored.
            resampler = av.AudioResampler(format="s16", layout=stream.layout.name, rate=SAMPLE_RATE)
            chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise AudioFormatError(f"{path}: not an audio file FFmpeg can read ({exc.strerror or exc})") from None
    samples = np.concatenate(chunks).reshape(-1, channels) if chunks else np.zeros((0, channels), dtype=np.int16)
    if channel is not None:
        mono = samples[:, channel]
    else:
        mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0]
    return mono.astype("<i2").tobytes()


def resample(mono: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole int16 mono clip with libswresample: about 0.5 ms per second of audio."""
    if rate == to_rate:
        return mono.astype(np.int16, copy=False)
    samples = np.ascontiguousarray(mono, dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    # One resampler per clip: no filter state leaks from one clip into the next.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # the filter's tail
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

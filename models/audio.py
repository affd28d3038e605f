"""Audio in the one format the pipeline takes: 16 kHz, mono, signed 16-bit PCM."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Optional

import av
import numpy as np

SAMPLE_RATE = 16000


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
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._resampler.resample(frame))


def read_wav(path: Path, channel: Optional[int] = None) -> bytes:
    """Read a PCM WAV as 16 kHz mono int16 bytes: one channel if given, else the mix of all."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"{path}: not a PCM WAV file ({exc})") from None
    if width != 2:
        raise AudioFormatError(f"{path}: {8 * width}-bit samples; 16-bit PCM is required")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
    if channel is not None:
        if not 0 <= channel < channels:
            raise AudioFormatError(f"{path}: has {channels} channel(s), no channel {channel}")
        mono = samples[:, channel]
    else:
        mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = _resample(mono, rate)
    return mono.astype("<i2").tobytes()


def _resample(mono: np.ndarray, rate: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

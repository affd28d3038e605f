"""Corpus audio written in other file formats, for the tests that read any format."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from earshot.models.audio import SAMPLE_RATE, resample


def encode(pcm16: bytes, path: Path, codec: str, rate: int, channels: int, sample_format: str) -> Path:
    """Write 16 kHz mono PCM as another file format, resampled to `rate`, copied to `channels` channels."""
    mono = resample(np.frombuffer(pcm16, dtype=np.int16), SAMPLE_RATE, rate)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.format = sample_format
        frame = av.AudioFrame.from_ndarray(np.tile(mono, (channels, 1)).T.reshape(1, -1).copy(), format="s16", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path

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


def music(seconds: float = 8.0, seed: int = 0) -> bytes:
    """A synthetic tune at 16 kHz: harmonic notes with vibrato and a decaying envelope, a chord under them.

    Not speech, but voiced and pitched the way speech is, which is what makes
    music hard for a VAD: webrtcvad calls much of it voice.
    """
    rng = np.random.default_rng(seed)
    t_note = np.arange(int(0.4 * SAMPLE_RATE)) / SAMPLE_RATE
    notes = []
    for midi in rng.choice([60, 62, 64, 65, 67, 69, 71, 72], size=int(seconds / 0.4)):
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        phase = 2 * np.pi * f0 * t_note + 0.3 * np.sin(2 * np.pi * 5.5 * t_note)  # vibrato
        tone = sum(np.sin(k * phase) / k for k in range(1, 7))
        notes.append(tone * np.exp(-3.0 * t_note) * np.minimum(1.0, t_note / 0.01))
    melody = np.concatenate(notes)
    t = np.arange(len(melody)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0)) / 3
    mixed = melody + 0.5 * chord
    return np.round(mixed / np.abs(mixed).max() * 8000).astype(np.int16).tobytes()

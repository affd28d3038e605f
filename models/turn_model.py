"""Is the speaker's turn complete? Smart Turn v3.2, an audio model, run with ONNX Runtime.

Smart Turn (pipecat-ai, BSD-2) hears intonation and unfinished phrases, not only
silence. Its weights ship inside the `pipecat-ai` wheel, which is installed with
`--no-deps` as a weights carrier: nothing of pipecat is imported, the .onnx file
is found on disk (`bundled_turn_model_path`). The features are computed here in
numpy (no torch, no transformers at run time).

The contract, as read from pipecat 1.14.0 (`local_smart_turn_v3.py`,
`_whisper_features.py`) and checked against its extractor in tests/test_turn_model.py:
- input: 16 kHz mono audio of the turn so far (pipecat hands it the speech from
  0.5 s before its start up to now, trailing silence included), only the last
  8 s of it; shorter audio is zero-padded at the START to exactly 8 s.
- features: Whisper's log-mel (80 bins, n_fft 400, hop 160, periodic Hann,
  centred with reflect padding, the last frame dropped: 80 x 800), after a
  zero-mean unit-variance normalisation of the whole padded 8 s waveform;
  log10 floored at 1e-10, clamped to (max - 8), then (x + 4) / 4.
- output: `logits` of shape (batch, 1), already a sigmoid: the probability that
  the turn is complete. pipecat calls the turn complete above 0.5.

CPU time per `predict` on this machine (2 cores, 1 intra-op thread, 50 calls
each, `python -m bench.turn_model_bench`): p50 91 ms, p95 112 ms, all on one
core (MEASURED below). The audio is always padded to 8 s, so 2 s of speech
costs the same as 8 s.

`predict` blocks for tens of milliseconds: never call it on the event loop; the
pipeline runs it through `asyncio.to_thread`. One `EndOfTurnModel` (one ONNX
session) per process is enough: `InferenceSession.run` is safe to call from
several threads at once, and the features are computed on the caller's thread
from immutable tables.
"""

# MEASURED (python -m bench.turn_model_bench, 2026-12-01, this 2-core machine, idle, 50 calls each):
#   1 thread,  8 s of speech: predict p50 91 ms, p95 112 ms; CPU = wall (one core); features 12.7 ms of it
#   1 thread,  2 s of speech: predict p50 93 ms, p95 105 ms (the window is always 8 s)
#   2 threads, 8 s of speech: predict p50 67 ms, p95 74 ms, but 132 ms of CPU per call (30 calls)

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from earshot.models.audio import SAMPLE_RATE
from earshot.models.model_files import ModelMissingError

PACKAGE = "pipecat-ai"
PACKAGE_SPEC = "pipecat-ai==1.14.0"  # the file's path inside the wheel is not an API: pinned
INSTALL_HINT = f"run `pip install --no-deps '{PACKAGE_SPEC}'` (its weights only)"
BUNDLED_FILE = Path("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx")  # under the `pipecat` package

WINDOW_S = 8  # the model's fixed input: 8 s at 16 kHz
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800: one frame per hop, Whisper drops the last of the 801


@dataclass(frozen=True)
class EndOfTurnConfig:
    model_path: str = ""  # "" for the bundled smart-turn-v3.2-cpu.onnx, else the path of a Smart Turn v3 .onnx
    max_audio_s: float = 8.0  # how much of the turn's end the model hears; at most WINDOW_S
    threads: int = 1  # ONNX Runtime intra-op threads

    def __post_init__(self) -> None:
        if not 0.0 < self.max_audio_s <= WINDOW_S:
            raise ValueError(f"max_audio_s must lie in (0, {WINDOW_S}], not {self.max_audio_s}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")


@dataclass(frozen=True)
class EndOfTurn:
    probability: float  # that the turn is complete (the endpointer's threshold decides: server/endpointing.py)
    inference_s: float  # wall time of the whole predict: features and the ONNX run


def bundled_turn_model_path() -> Path:
    """The .onnx inside the installed `pipecat-ai` package, found without importing it.

    Importing `pipecat` would need loguru and the rest of its dependencies, which
    this project does not install.
    """
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(f"{PACKAGE} (the bundled Smart Turn weights) is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / BUNDLED_FILE
        if path.is_file():
            return path
    where = ", ".join(spec.submodule_search_locations)
    raise ModelMissingError(f"{PACKAGE} at {where} holds no {BUNDLED_FILE}: {INSTALL_HINT}")


# --- features -----------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz < 1000.0, linear, logarithmic)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    logarithmic = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel < 15.0, linear, logarithmic)


def _mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangles from 0 Hz to Nyquist, each scaled to unit area (Slaney)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (upper - lower))


def _filter_taps(filters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank as taps: (FFT bin, weight) of each filter's nonzero run, in filter order, and where each filter starts.

    Each FFT bin feeds at most two filters, so the mel projection is about 400
    multiply-adds per frame instead of a 80 x 201 matrix product. It also keeps
    the features off BLAS: a numpy matmul wakes OpenBLAS's threads, which then
    spin for about 0.1 s on the other core, which doubled the CPU time of a call
    (measured: 171 ms CPU for 86 ms wall; 84 / 84 ms with OPENBLAS_NUM_THREADS=1).
    """
    bins, weights, starts = [], [], []
    for row in filters:
        nonzero = np.nonzero(row)[0]
        run = np.arange(nonzero[0], nonzero[-1] + 1) if len(nonzero) else np.zeros(1, dtype=np.int64)
        starts.append(sum(len(b) for b in bins))
        bins.append(run)
        weights.append(row[run])
    return np.concatenate(bins), np.concatenate(weights), np.array(starts)


_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann, as torch.hann_window
_TAP_BINS, _TAP_WEIGHTS, _TAP_STARTS = _filter_taps(_mel_filters())


def model_window(pcm16: Union[bytes, np.ndarray], max_audio_s: float = WINDOW_S) -> np.ndarray:
    """The last `max_audio_s` of 16 kHz int16 audio as float32 in [-1, 1), zero-padded at the start to 8 s."""
    samples = np.frombuffer(pcm16, dtype=np.int16) if isinstance(pcm16, (bytes, bytearray, memoryview)) else pcm16
    if samples.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {samples.shape}")
    keep = int(round(max_audio_s * SAMPLE_RATE))
    tail = samples[-keep:] if keep else samples[:0]
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    if len(tail):
        window[-len(tail) :] = tail.astype(np.float32) / 32768.0
    return window


def log_mel_features(window: np.ndarray) -> np.ndarray:
    """Whisper's normalised log-mel of an 8 s window: float32 (N_MELS, N_FRAMES)."""
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {window.shape}")
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))  # in float32, as the reference does
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    starts = np.arange(N_FRAMES) * HOP  # frame i is centred on sample i * HOP; the 801st is never used
    frames = padded[starts[:, None] + np.arange(N_FFT)[None, :]]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2  # (N_FRAMES, N_FFT // 2 + 1)
    mel = np.add.reduceat(power[:, _TAP_BINS] * _TAP_WEIGHTS, _TAP_STARTS, axis=1)  # (N_FRAMES, N_MELS)
    log_mel = np.log10(np.maximum(mel.T, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


# --- the model -----------------------------------------------------------------


class EndOfTurnModel:
    """One Smart Turn ONNX session. Build it once per process with `load`; `predict` from worker threads."""

    def __init__(self, session, config: EndOfTurnConfig, model_path: Path) -> None:  # session: onnxruntime.InferenceSession
        self._session = session
        self.config = config
        self.model_path = model_path

    @classmethod
    def load(cls, config: EndOfTurnConfig = EndOfTurnConfig()) -> "EndOfTurnModel":
        """Load the model a config names; ModelMissingError (with the path and what to install) if it cannot."""
        import onnxruntime

        path = Path(config.model_path).expanduser() if config.model_path else bundled_turn_model_path()
        if not path.is_file():
            raise ModelMissingError(f"end-of-turn model {path} is missing: give a Smart Turn v3 .onnx, or {INSTALL_HINT}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a file that is not a model
            raise ModelMissingError(f"{path} is not a loadable ONNX model: {exc}") from None
        inputs = {i.name: i.shape for i in session.get_inputs()}
        if list(inputs.get("input_features", []))[1:] != [N_MELS, N_FRAMES]:
            raise ModelMissingError(f"{path} is not a Smart Turn v3 model: its inputs are {inputs}")
        model = cls(session, config, path)
        model.predict(np.zeros(SAMPLE_RATE, dtype=np.int16))  # the first run allocates: pay it at load
        return model

    def predict(self, pcm16: Union[bytes, np.ndarray]) -> EndOfTurn:
        """Whether the turn in `pcm16` (16 kHz mono int16, bytes or array) is complete.

        Give it the turn so far with the silence after it, as the pipeline has
        it; only the last `max_audio_s` is heard. Blocks (tens of ms): call it
        from a worker thread (`asyncio.to_thread`), never on the event loop.
        """
        started = time.perf_counter()
        features = log_mel_features(model_window(pcm16, self.config.max_audio_s))
        (output,) = self._session.run(["logits"], {"input_features": features[None]})
        probability = float(output.reshape(-1)[0])
        return EndOfTurn(
            probability=probability,
            inference_s=time.perf_counter() - started,
        )

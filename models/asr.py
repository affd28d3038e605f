"""One shared Whisper model, run off the event loop, scheduled fairly.

Every session submits decode requests to one `AsrEngine`. By default it runs
one worker thread per core, each decoding with one CPU thread, on one shared
CTranslate2 model (`num_workers` replicas share the weights). CTranslate2
releases the GIL, so the decodes truly run side by side. On 2 cores with
tiny.en, one 3 s partial took 0.134 s on 2 threads and 0.106 s on 1 thread:
a small model splits poorly across cores. Two workers of one thread each
decoded 8 partials in 0.074 s apiece, 1.8 times the throughput of one
2-thread worker, and that throughput is what several sessions need.

The queue the workers take from is what keeps latency flat as sessions are added:

* finals before partials: a final is what a user waits on at end of speech;
* partials are latest-only per stream: a newer partial request replaces the
  queued one (its caller gets `None`), so a busy engine never works on stale
  audio;
* partials round-robin across streams: the stream served longest ago goes next,
  so no session starves;
* a worker takes up to `max_batch` partials of different streams at once and
  decodes them in one model call (`scheduling="fifo"` is the naive baseline the
  load test compares against: arrival order, nothing dropped, no batching).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from earshot.models.audio import SAMPLE_RATE
from earshot.models.model_files import whisper_model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AsrConfig:
    model: str = "tiny.en"
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 0  # CPU threads per decode; 0 = the cores shared out between the workers
    workers: int = 0  # decodes run at once; 0 = one per core (at most 4). See AsrEngine.
    language: str = "en"
    beam_size: int = 5
    beam_max_s: float = 10.0  # longer utterances decode greedily: beam search time grows with length
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    trim_window: bool = True  # see window_frames
    # Silero must hear at least this much speech before Whisper runs (0 = no check); see SpeechCheck.
    speech_check_ms: int = 250
    cache_dir: Path = Path(".earshot")
    # "fair": finals first, latest-only partials, round-robin across streams (see FairQueue).
    # "fifo": every request in arrival order, nothing dropped: the naive baseline, kept to measure against.
    scheduling: str = "fair"
    max_batch: int = 1  # partials of different streams decoded in one model call (1 = one at a time); see README


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the decoded audio
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]  # empty for partials, which skip word alignment
    audio_s: float
    queued_s: float  # waited in the queue
    inference_s: float  # ran on the model


@dataclass(eq=False)  # jobs are compared by identity: comparing their audio arrays is wrong and costly
class _Job:
    stream_id: str
    audio: np.ndarray
    final: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    submitted: float = field(default_factory=time.monotonic)


class _WorkerQueue:
    """What both queues share: the condition the workers wait on, closing, and the depth."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False

    def _waiting(self) -> int:
        raise NotImplementedError

    def _wait_for_work(self) -> bool:
        """With the lock held: block until a job waits; False once closed."""
        while not self._closed and not self._waiting():
            self._cond.wait()
        return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        with self._cond:
            return self._waiting()


class FairQueue(_WorkerQueue):
    """Finals FIFO first, then one partial per stream, least recently served first."""

    def __init__(self) -> None:
        super().__init__()
        self._finals: deque[_Job] = deque()
        self._partials: dict[str, _Job] = {}
        self._last_served: dict[str, int] = {}
        self._turn = itertools.count()

    def _waiting(self) -> int:
        return len(self._finals) + len(self._partials)

    def put(self, job: _Job) -> Optional[_Job]:
        """Queue a job; returns a partial it displaced, whose caller should get None."""
        with self._cond:
            displaced = None
            if job.final:
                self._finals.append(job)
            else:
                displaced = self._partials.pop(job.stream_id, None)
                self._partials[job.stream_id] = job
            self._cond.notify()
            return displaced

    def remove(self, job: _Job) -> bool:
        with self._cond:
            if job.final and job in self._finals:
                self._finals.remove(job)
                return True
            if not job.final and self._partials.get(job.stream_id) is job:
                del self._partials[job.stream_id]
                return True
            return False

    def get(self, max_batch: int = 1) -> list[_Job]:
        """Block until work is ready: one final, or up to `max_batch` partials of different
        streams, least recently served first. Empty once closed."""
        with self._cond:
            if not self._wait_for_work():
                return []
            if self._finals:
                jobs = [self._finals.popleft()]
            else:
                streams = sorted(self._partials, key=lambda s: self._last_served.get(s, -1))[:max_batch]
                jobs = [self._partials.pop(stream_id) for stream_id in streams]
            for job in jobs:
                self._last_served[job.stream_id] = next(self._turn)
            return jobs

    def forget(self, stream_id: str) -> None:
        with self._cond:
            self._last_served.pop(stream_id, None)


class FifoQueue(_WorkerQueue):
    """Arrival order, nothing displaced, finals not promoted: the naive baseline
    (`scheduling="fifo"`), kept so the load test can measure what FairQueue wins."""

    def __init__(self) -> None:
        super().__init__()
        self._jobs: deque[_Job] = deque()

    def _waiting(self) -> int:
        return len(self._jobs)

    def put(self, job: _Job) -> Optional[_Job]:
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
            return None

    def remove(self, job: _Job) -> bool:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
                return True
            return False

    def get(self, max_batch: int = 1) -> list[_Job]:
        with self._cond:
            return [self._jobs.popleft()] if self._wait_for_work() else []

    def forget(self, stream_id: str) -> None:
        pass


@dataclass(frozen=True)
class DecodeStats:
    """One decoded request, for the server's metrics."""

    final: bool
    queued_s: float  # submitted -> its decode started
    inference_s: float  # the model call (a batch's whole call for each of its jobs)
    batch_size: int
    audio_s: float


DecodeObserver = Callable[[DecodeStats], None]


class AsrEngine:
    """Load once per process; share between all sessions."""

    def __init__(self, model, config: AsrConfig) -> None:  # model: faster_whisper.WhisperModel
        self._model = model
        self.config = config
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=config.language
        )
        # No timestamp tokens: each request is one utterance and word times come from alignment.
        self._prompt = list(self._tokenizer.sot_sequence) + [self._tokenizer.no_timestamps]
        self._suppress_tokens = get_suppressed_tokens(self._tokenizer, [-1])
        self._speech_check = SpeechCheck() if config.speech_check_ms > 0 else None
        self._queue = FifoQueue() if config.scheduling == "fifo" else FairQueue()
        self._observer: Optional[DecodeObserver] = None
        self._workers = [
            threading.Thread(target=self._run, name=f"asr-worker-{n}", daemon=True) for n in range(worker_count(config))
        ]
        for worker in self._workers:
            worker.start()

    @classmethod
    def load(cls, config: AsrConfig) -> "AsrEngine":
        """Locate and load the model; raises ModelMissingError with the package to install."""
        from faster_whisper import WhisperModel

        model_dir = whisper_model_dir(config.model, config.cache_dir)
        model = WhisperModel(
            str(model_dir),
            device=config.device,
            compute_type=config.compute_type,
            cpu_threads=threads_per_worker(config),
            num_workers=worker_count(config),
            local_files_only=True,
        )
        engine = cls(model, config)
        engine._decode(np.zeros(SAMPLE_RATE, dtype=np.float32), final=True)  # first call allocates; pay it now
        return engine

    @property
    def queue_depth(self) -> int:
        return self._queue.depth

    async def transcribe(self, stream_id: str, pcm16: bytes, final: bool) -> Optional[Transcript]:
        """Decode 16 kHz int16 audio. Returns None when a newer partial of the stream replaced this one."""
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        loop = asyncio.get_running_loop()
        job = _Job(stream_id=stream_id, audio=audio, final=final, future=loop.create_future(), loop=loop)
        displaced = self._queue.put(job)
        if displaced is not None:
            _hand_back(displaced, None, None)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._queue.remove(job)  # not started yet: nobody will do it for nothing
            raise

    def forget_stream(self, stream_id: str) -> None:
        self._queue.forget(stream_id)

    def close(self) -> None:
        self._queue.close()
        for worker in self._workers:
            worker.join(timeout=5)

    # --- worker thread ---------------------------------------------------------
    def observe(self, observer: Optional[DecodeObserver]) -> None:
        """Call `observer` (from a worker thread) once per decoded request."""
        self._observer = observer

    def _run(self) -> None:
        while jobs := self._queue.get(self.config.max_batch):
            jobs = [job for job in jobs if not job.future.done()]  # drop those cancelled while queued
            if not jobs:
                continue
            started = time.monotonic()
            try:
                if jobs[0].final:
                    results: list[Optional[Transcript]] = [self._decode(jobs[0].audio, final=True)]
                else:
                    results = list(self._decode_partials([job.audio for job in jobs]))
                error = None
            except Exception as exc:  # reported to the callers, the worker goes on
                results, error = [None] * len(jobs), exc
            inference_s = time.monotonic() - started
            for job, result in zip(jobs, results):
                if result is not None:
                    result = _with_timing(result, started - job.submitted, inference_s)
                    self._report(DecodeStats(job.final, started - job.submitted, inference_s, len(jobs), result.audio_s))
                _hand_back(job, result, error)

    def _report(self, stats: DecodeStats) -> None:
        if self._observer is None:
            return
        try:
            self._observer(stats)
        except Exception:  # metrics must never stop transcription
            log.exception("ASR decode observer failed")

    def _decode(self, audio: np.ndarray, final: bool) -> Transcript:
        return self._decode_batch([audio], final)[0]

    def _decode_partials(self, audios: list[np.ndarray]) -> list[Transcript]:
        return self._decode_batch(audios, final=False)

    def _decode_batch(self, audios: list[np.ndarray], final: bool) -> list[Transcript]:
        """Decode utterances (< 30 s each), each as a single Whisper window, in one model call.

        faster-whisper's `transcribe` pads every input to a 30 s window. We run
        the same model parts ourselves with a window trimmed to the utterance
        (see `window_frames`): the encoder and the decoder's cross-attention
        then cost a fraction as much, which is most of a final's latency.
        Partials of several streams share one call, padded to the longest
        window among them (at least 10 s, so most partials need no extra
        padding); a final is always decoded alone (beam search, word times).
        """
        assert not final or len(audios) == 1, "finals are decoded one at a time"
        transcripts = [Transcript("", (), len(audio) / SAMPLE_RATE, 0.0, 0.0) for audio in audios]  # empty unless decoded
        # webrtcvad hears "voice" in hum or clicks; when Silero disagrees, Whisper never sees the audio.
        speech = [
            index
            for index, audio in enumerate(audios)
            if self._speech_check is None or self._speech_check.speech_ms(audio) >= self.config.speech_check_ms
        ]
        if not speech:
            return transcripts
        features = [self._model.feature_extractor(audios[index]) for index in speech]
        if self.config.trim_window:
            window = max(window_frames(f.shape[-1]) for f in features)
        else:
            window = self._model.feature_extractor.nb_max_frames
        encoder_output = self._model.encode(np.stack([pad_or_trim(f, window) for f in features]))
        results = self._model.model.generate(
            encoder_output,
            [self._prompt] * len(speech),
            beam_size=self._beam_size(final, max(len(audios[index]) for index in speech) / SAMPLE_RATE),
            return_scores=True,
            return_no_speech_prob=True,
            max_length=self._model.max_length,
            suppress_blank=True,
            suppress_tokens=self._suppress_tokens,
        )
        for index, feature, result in zip(speech, features, results):
            tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
            text = self._tokenizer.decode(tokens).strip()
            # Same score Whisper's own thresholds use: length-normalised log-probability.
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            if not self._believable(text, avg_logprob, result.no_speech_prob):
                continue
            words: tuple[Word, ...] = ()
            if final:
                aligned = self._model.find_alignment(self._tokenizer, [tokens], encoder_output, feature.shape[-1])[0]
                words = tuple(
                    Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3), round(float(w["probability"]), 3))
                    for w in aligned
                    if w["word"].strip()
                )
            transcripts[index] = Transcript(text, words, len(audios[index]) / SAMPLE_RATE, 0.0, 0.0)
        return transcripts

    def _beam_size(self, final: bool, audio_s: float) -> int:
        """Beam search where the latency budget allows it.

        Partials are greedy: they are replaced within a fraction of a second
        anyway. Finals use the beam up to `beam_max_s` of audio. On tiny.en
        with 2 cores, beam 5 cut the corpus WER from 4.4% to 3.5%, while its
        decode time grew with length past what the end-of-speech wait can
        hide (2 s finals for a 26 s utterance).
        """
        if not final or audio_s > self.config.beam_max_s:
            return 1
        return self.config.beam_size

    def _believable(self, text: str, avg_logprob: float, no_speech_prob: float) -> bool:
        """Whisper's hallucination guards, applied to the one window we decoded."""
        if not any(ch.isalnum() for ch in text):
            return False  # " . . ." on noise
        if no_speech_prob > self.config.no_speech_threshold and avg_logprob < self.config.log_prob_threshold:
            return False  # the "Thanks for watching!" family: probably no speech, and unsure
        if get_compression_ratio(text) > self.config.compression_ratio_threshold:
            return False  # "you you you you": a decoding loop, not speech
        return True


class SpeechCheck:
    """Second opinion on whether audio holds speech, from the Silero VAD model faster-whisper ships.

    webrtcvad is fast and frame-exact, which is why it cuts utterances, but it
    takes steady tones (mains hum, fans) for voice. Silero does not, and costs
    about 2 ms per second of audio, so every decode is checked first.
    """

    WINDOW = 512  # samples per Silero step (32 ms)

    def __init__(self, threshold: float = 0.5) -> None:
        from faster_whisper.vad import get_vad_model

        self._model = get_vad_model()
        self._threshold = threshold

    def speech_ms(self, audio: np.ndarray) -> int:
        usable = len(audio) - len(audio) % self.WINDOW
        if usable == 0:
            return 0
        # A copy: faster-whisper's Silero wrapper writes into the array it is given.
        probabilities = self._model(audio[:usable].copy())
        return int((probabilities > self._threshold).sum()) * self.WINDOW * 1000 // SAMPLE_RATE


def worker_count(config: AsrConfig) -> int:
    if config.workers > 0:
        return config.workers
    if config.device != "cpu":
        return 1  # a GPU runs one decode at a time faster than it shares itself
    return max(1, min(4, os.cpu_count() or 1))


def threads_per_worker(config: AsrConfig) -> int:
    if config.threads > 0:
        return config.threads
    return max(1, (os.cpu_count() or 1) // worker_count(config))


def window_frames(num_frames: int) -> int:
    """Encoder window for an utterance of `num_frames` mel frames (100 a second).

    Whisper was trained on 30 s windows; cut too close to the speech it loops
    or drops the last words. Measured on the corpus with tiny.en: at least
    10 s and 3 s of padding after the speech keep the word error rate of the
    full window (4.9% vs 5.1%) at less than half the decode time.
    """
    return min(3000, max(num_frames + 300, 1000))


def _with_timing(result: Transcript, queued_s: float, inference_s: float) -> Transcript:
    return Transcript(result.text, result.words, result.audio_s, round(queued_s, 4), round(inference_s, 4))


def _hand_back(job: _Job, result: Optional[Transcript], error: Optional[BaseException]) -> None:
    """Deliver a result to the job's event loop, from any thread."""
    try:
        job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
    except RuntimeError:
        pass  # that loop has closed (its caller is gone): the engine serves other loops on


def _resolve(future: asyncio.Future, result: Optional[Transcript], error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

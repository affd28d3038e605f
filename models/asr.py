"""One shared Whisper model, run off the event loop, scheduled fairly.

Every session submits decode requests to one `AsrEngine`. By default it runs
one worker thread per core, each decoding with one CPU thread, on one shared
CTranslate2 model (`num_workers` replicas share the weights). CTranslate2
releases the GIL, so the decodes truly run side by side. On 2 cores with
tiny.en, one 3 s partial took 0.134 s on 2 threads and 0.106 s on 1 thread:
a small model splits poorly across cores. Two workers of one thread each
decoded 8 partials in 0.074 s apiece, 1.8 times the throughput of one
2-thread worker, and that throughput is what several sessions need.

The queue the workers take from is what keeps latency flat as sessions are
added: finals first, latest-only partials, round-robin across streams, and
partials of several streams batched into one model call (`asr_queues.py`).
What decides whether Whisper runs and whether its text is kept is in
`asr_guards.py`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from earshot.models.asr_guards import SpeechCheck, believable, window_frames
from earshot.models.asr_queues import DecodeJob, FairQueue, FifoQueue
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


class SpeechRecognizer(Protocol):
    """What a stream's decode scheduling (models/streaming.py) asks of an ASR engine.

    `AsrEngine` is the one Earshot ships; another engine implements these two
    and is loaded where server/serve_command.py loads `AsrEngine` (the server
    also reads its `queue_depth`, calls `observe` for metrics and `close`).
    """

    async def transcribe(self, stream_id: str, pcm16: bytes, final: bool) -> Optional[Transcript]:
        """Decode 16 kHz int16 audio; None when a newer partial of the stream replaced this one."""
        ...

    def forget_stream(self, stream_id: str) -> None:
        """The stream ended: drop what the engine keeps for it (its place in the fair queue)."""
        ...


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
        engine._warm_up()
        return engine

    def _warm_up(self) -> None:
        """Run the model once per worker, all at once, so each CTranslate2 replica pays its first call now.

        A replica allocates its buffers on its own first call; left to the first
        real finals, that cost lands on the first answers a user waits on. Straight
        to the model, not through `_decode`: the speech check turns silence away.
        """
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        with ThreadPoolExecutor(len(self._workers), thread_name_prefix="asr-warm-up") as pool:
            list(pool.map(lambda _: self._whisper([silence], final=True), self._workers))

    @property
    def queue_depth(self) -> int:
        return self._queue.depth

    async def transcribe(self, stream_id: str, pcm16: bytes, final: bool) -> Optional[Transcript]:
        """Decode 16 kHz int16 audio. Returns None when a newer partial of the stream replaced this one."""
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        loop = asyncio.get_running_loop()
        job = DecodeJob(stream_id=stream_id, audio=audio, final=final, future=loop.create_future(), loop=loop)
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
        """Decode utterances in one model call; those that do not hold speech come back empty, unheard."""
        assert not final or len(audios) == 1, "finals are decoded one at a time"
        transcripts = [Transcript("", (), len(audio) / SAMPLE_RATE, 0.0, 0.0) for audio in audios]  # empty unless decoded
        # webrtcvad hears "voice" in hum or clicks; when Silero disagrees, Whisper never sees the audio.
        speech = [
            index
            for index, audio in enumerate(audios)
            if self._speech_check is None or self._speech_check.speech_ms(audio) >= self.config.speech_check_ms
        ]
        if speech:
            for index, transcript in zip(speech, self._whisper([audios[index] for index in speech], final)):
                if transcript is not None:
                    transcripts[index] = transcript
        return transcripts

    def _whisper(self, audios: list[np.ndarray], final: bool) -> list[Optional[Transcript]]:
        """The model itself on utterances (< 30 s each), each as a single Whisper window, in one call.

        faster-whisper's `transcribe` pads every input to a 30 s window. We run
        the same model parts ourselves with a window trimmed to the utterance
        (see `window_frames`): the encoder and the decoder's cross-attention
        then cost a fraction as much, which is most of a final's latency.
        Partials of several streams share one call, padded to the longest
        window among them (at least 10 s, so most partials need no extra
        padding); a final is always decoded alone (beam search, word times).
        An utterance whose text the hallucination guards reject gets None.
        """
        features = [self._model.feature_extractor(audio) for audio in audios]
        if self.config.trim_window:
            window = max(window_frames(f.shape[-1]) for f in features)
        else:
            window = self._model.feature_extractor.nb_max_frames
        encoder_output = self._model.encode(np.stack([pad_or_trim(f, window) for f in features]))
        results = self._model.model.generate(
            encoder_output,
            [self._prompt] * len(audios),
            beam_size=self._beam_size(final, max(len(audio) for audio in audios) / SAMPLE_RATE),
            return_scores=True,
            return_no_speech_prob=True,
            max_length=self._model.max_length,
            suppress_blank=True,
            suppress_tokens=self._suppress_tokens,
        )
        transcripts: list[Optional[Transcript]] = []
        for audio, feature, result in zip(audios, features, results):
            tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
            text = self._tokenizer.decode(tokens).strip()
            # Same score Whisper's own thresholds use: length-normalised log-probability.
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            if not believable(text, avg_logprob, result.no_speech_prob, self.config):
                transcripts.append(None)
                continue
            words: tuple[Word, ...] = ()
            if final:
                aligned = self._model.find_alignment(self._tokenizer, [tokens], encoder_output, feature.shape[-1])[0]
                words = tuple(
                    Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3), round(float(w["probability"]), 3))
                    for w in aligned
                    if w["word"].strip()
                )
            transcripts.append(Transcript(text, words, len(audio) / SAMPLE_RATE, 0.0, 0.0))
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


def _with_timing(result: Transcript, queued_s: float, inference_s: float) -> Transcript:
    return Transcript(result.text, result.words, result.audio_s, round(queued_s, 4), round(inference_s, 4))


def _hand_back(job: DecodeJob, result: Optional[Transcript], error: Optional[BaseException]) -> None:
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

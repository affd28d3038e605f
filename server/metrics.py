"""Prometheus metrics at GET /metrics: what an operator (and the load tester) watches live.

    earshot_live_sessions                 calls connected now
    earshot_asr_queue_depth               decodes waiting for the shared Whisper worker
    earshot_asr_queue_wait_seconds{kind}  a decode's wait in that queue (kind: final | partial)
    earshot_asr_inference_seconds{kind}   its model call (a batch's whole call)
    earshot_asr_batch_size                partials decoded together in one model call
    earshot_final_latency_seconds         end of speech (the VAD's) -> final, on the audio clock (the endpointing wait included)
    earshot_end_of_turn_seconds           one end-of-turn model call (features + ONNX run), in its worker thread
    earshot_utterance_ends_total{ended_by}  why utterances ended: silence, model, fallback, short, length, stream_end
    earshot_event_loop_lag_seconds        how late the event loop wakes a 0.5 s sleep: CPU work blocking the media path shows here
    earshot_errors_total{code}            error events sent to callers
    process_cpu_seconds_total, process_resident_memory_bytes, ...   the server process (Linux)

One registry per server (no process-global state), fed from the events the
calls send, so what is counted is what callers saw.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from earshot.models.asr import DecodeStats
from earshot.server import protocol

LAG_PROBE_S = 0.5
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self, live_sessions: Callable[[], int], asr_queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes...: the load test's CPU and memory curves.
        ProcessCollector(registry=self.registry)
        Gauge("earshot_live_sessions", "calls connected now", registry=self.registry).set_function(live_sessions)
        Gauge("earshot_asr_queue_depth", "decodes waiting for the Whisper worker", registry=self.registry).set_function(
            asr_queue_depth
        )
        self._asr_wait = Histogram(
            "earshot_asr_queue_wait_seconds", "a decode's wait for a Whisper worker", ["kind"], buckets=DECODE_BUCKETS, registry=self.registry
        )
        self._asr_inference = Histogram(
            "earshot_asr_inference_seconds", "a decode's model call", ["kind"], buckets=DECODE_BUCKETS, registry=self.registry
        )
        self._asr_batch = Histogram(
            "earshot_asr_batch_size", "partials decoded in one model call", buckets=(1, 2, 3, 4, 6, 8, 16), registry=self.registry
        )
        self._final_latency = Histogram(
            "earshot_final_latency_seconds",
            "end of speech to final, on the audio clock",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._end_of_turn = Histogram(
            "earshot_end_of_turn_seconds", "one end-of-turn model call", buckets=DECODE_BUCKETS, registry=self.registry
        )
        self._utterance_ends = Counter(
            "earshot_utterance_ends", "utterances ended, by why", ["ended_by"], registry=self.registry
        )
        self._no_final = Counter(
            "earshot_utterances_without_final", "utterances that ended with no final, by why", ["reason"], registry=self.registry
        )
        self._loop_lag = Histogram(
            "earshot_event_loop_lag_seconds", "lateness of a 0.5 s sleep on the event loop", buckets=LAG_BUCKETS, registry=self.registry
        )
        self._errors = Counter("earshot_errors", "error events sent to callers", ["code"], registry=self.registry)

    def observe(self, event: protocol.Event) -> None:
        """Count an event a call sends (from the event loop; cheap)."""
        if isinstance(event, protocol.Final):
            self._final_latency.observe(max(0.0, event.emitted_audio_s - event.speech_end_audio_s))
        elif isinstance(event, protocol.SpeechEnd):
            self._utterance_ends.labels(event.ended_by).inc()
            for check in event.end_of_turn_checks:
                self._end_of_turn.observe(check.inference_s)
        elif isinstance(event, protocol.NoFinal):
            self._no_final.labels(event.reason).inc()
        elif isinstance(event, protocol.Error):
            self._errors.labels(event.code).inc()

    def observe_decode(self, stats: DecodeStats) -> None:
        """Count one decode of the shared ASR engine (called from its worker threads; prometheus-client locks)."""
        kind = "final" if stats.final else "partial"
        self._asr_wait.labels(kind).observe(stats.queued_s)
        self._asr_inference.labels(kind).observe(stats.inference_s)
        if not stats.final:
            self._asr_batch.observe(stats.batch_size)

    async def watch_event_loop(self) -> None:
        """Runs for the server's life: sleeps LAG_PROBE_S and records how late it woke."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self._loop_lag.observe(max(0.0, loop.time() - started - LAG_PROBE_S))

    def render(self) -> bytes:
        return generate_latest(self.registry)

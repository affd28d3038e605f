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
    earshot_reply_latency_seconds         the candidate's voice end -> the interviewer's next first audio frame, on the
                                          call's audio clock (the load tester's agent_reply_s, measured at the server)
    earshot_llm_first_token_seconds       an LLM request -> its first token (any use: follow-ups, suggestions,
                                          reports), the wait behind another generation included
    earshot_tts_first_audio_seconds{cached}  an interviewer utterance's first sentence: text in -> audio ready to play
                                          (Piper and its wait for the one TTS thread; cached: the phrase cache had it)
    earshot_barge_in_stop_seconds         the candidate's voice start, talking over the interviewer -> its first
                                          silent frame, for the cuts that stuck (audio clock)
    earshot_intent_inference_seconds{kind}  one intent classification (encoder + head) on its thread (final | partial)
    earshot_sessions_rejected_total{reason}  session or call requests refused at capacity (count_rejected)
    earshot_reconnects_total              calls that resumed an existing session (count_reconnect)
    process_cpu_seconds_total, process_resident_memory_bytes, ...   the server process (Linux)

One registry per server (no process-global state), fed from the events the
calls send, so what is counted is what callers saw. Where no event carries a
time (the LLM's first token, the TTS, the barge-in stop) the component that
measures it is handed a method of this object: the ASR engine `observe_decode`
(server/serve_command.py), the LLM `observe_llm_first_token` and the
interview's voice `observe_tts_first_audio` and `observe_barge_in_stop` (both
here, from the `llm` and `modes` this is made with).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Protocol, runtime_checkable

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
REPLY_BUCKETS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)  # the first-token timeout is 3 s
BARGE_IN_BUCKETS = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)  # the VAD's onset alone is 60 ms
INTENT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # ~10 ms; 2 s is the stage's timeout
# A first audio later than this after the candidate's voice end is no reply to it (loadtest/measure.py's AGENT_REPLY_WINDOW_S).
REPLY_WINDOW_S = 15.0
REPLY_CALLS = 4096  # interview calls whose reply clock is kept; an interview that ended is dropped at once

CONTENT_TYPE = CONTENT_TYPE_LATEST


@runtime_checkable
class TimesFirstTokens(Protocol):
    """An LLM backend (models/llm/): it reports each reply's time to its first token."""

    def observe_first_token(self, observer: Optional[Callable[[float], None]]) -> None: ...


@runtime_checkable
class TimesVoice(Protocol):
    """A call mode's services with a voice (server/modes/interview.py): its calls report TTS and barge-in times."""

    def observe_voice(self, *, first_audio: Callable[[float, bool], None], barge_in_stop: Callable[[float], None]) -> None: ...


class ServerMetrics:
    def __init__(
        self,
        live_sessions: Callable[[], int],
        asr_queue_depth: Callable[[], int],
        llm: object = None,
        modes: Optional[Mapping[str, object]] = None,
    ) -> None:
        """`llm` and `modes`, when given, are handed the methods that record what they time (see above)."""
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
        self._reply = Histogram(
            "earshot_reply_latency_seconds",
            "the candidate's voice end to the interviewer's first audio, on the audio clock",
            buckets=REPLY_BUCKETS,
            registry=self.registry,
        )
        self._replies = ReplyTimer(self._reply.observe)
        self._llm_first_token = Histogram(
            "earshot_llm_first_token_seconds", "an LLM request to its first token", buckets=FIRST_TOKEN_BUCKETS, registry=self.registry
        )
        self._tts_first_audio = Histogram(
            "earshot_tts_first_audio_seconds",
            "an interviewer utterance's first sentence to its audio",
            ["cached"],
            buckets=DECODE_BUCKETS,
            registry=self.registry,
        )
        self._barge_in_stop = Histogram(
            "earshot_barge_in_stop_seconds",
            "the candidate's voice start to the interviewer's first silent frame, for a barge-in",
            buckets=BARGE_IN_BUCKETS,
            registry=self.registry,
        )
        self._intent = Histogram(
            "earshot_intent_inference_seconds", "one intent classification", ["kind"], buckets=INTENT_BUCKETS, registry=self.registry
        )
        self._rejected = Counter(
            "earshot_sessions_rejected", "session or call requests refused at capacity", ["reason"], registry=self.registry
        )
        self._reconnects = Counter("earshot_reconnects", "calls that resumed an existing session", registry=self.registry)
        if isinstance(llm, TimesFirstTokens):
            llm.observe_first_token(self.observe_llm_first_token)
        for services in (modes or {}).values():
            if isinstance(services, TimesVoice):
                services.observe_voice(first_audio=self.observe_tts_first_audio, barge_in_stop=self.observe_barge_in_stop)

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
        elif isinstance(event, protocol.Intent):
            if event.text.strip():  # empty text is answered without the model
                self._intent.labels("final" if event.final else "partial").observe(event.inference_s)
        self._replies.on_event(event)

    def observe_decode(self, stats: DecodeStats) -> None:
        """Count one decode of the shared ASR engine (called from its worker threads; prometheus-client locks)."""
        kind = "final" if stats.final else "partial"
        self._asr_wait.labels(kind).observe(stats.queued_s)
        self._asr_inference.labels(kind).observe(stats.inference_s)
        if not stats.final:
            self._asr_batch.observe(stats.batch_size)

    def observe_llm_first_token(self, seconds: float) -> None:
        """One LLM reply's time to its first token (on the event loop)."""
        self._llm_first_token.observe(seconds)

    def observe_tts_first_audio(self, seconds: float, cached: bool) -> None:
        """One interviewer utterance's first sentence, text -> audio (on the event loop)."""
        self._tts_first_audio.labels("true" if cached else "false").observe(seconds)

    def observe_barge_in_stop(self, seconds: float) -> None:
        """One barge-in: the candidate's voice start -> the interviewer's first silent frame (on the event loop)."""
        self._barge_in_stop.observe(seconds)

    def count_rejected(self, reason: str) -> None:
        """A session or call request refused at capacity, by why (e.g. the refusal's code)."""
        self._rejected.labels(reason).inc()

    def count_reconnect(self) -> None:
        """A call that resumed an existing session."""
        self._reconnects.inc()

    async def watch_event_loop(self) -> None:
        """Runs for the server's life: sleeps LAG_PROBE_S and records how late it woke."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self._loop_lag.observe(max(0.0, loop.time() - started - LAG_PROBE_S))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class _Turns:
    """One interview call's side of the reply clock."""

    voice_end_s: Optional[float] = None  # the candidate's last voice end not yet replied to (audio clock)
    speaking: bool = False  # the candidate is speaking now (a speech start with no end yet)


class ReplyTimer:
    """Reply latency from the events of interview calls, as the load tester measures it at the caller.

    From the candidate's voice end (`speech_end.end_s`, the VAD's) to the interviewer's next first
    audio frame (`agent_audio_start.emitted_audio_s`), both on the call's audio clock, within
    REPLY_WINDOW_S. Speech that goes on counts from its own end; a blip too short to be speech
    (`dropped`) ends nothing; an interviewer that starts while the candidate speaks is talking
    over, not replying; speech it talked over to the end of its utterance (a backchannel, "hi"
    over the greeting) is no turn. A call is followed from its first interviewer audio, so
    transcribe and assist calls cost nothing here.
    """

    def __init__(self, observe: Callable[[float], None], calls: int = REPLY_CALLS) -> None:
        self._observe = observe
        self._max_calls = calls
        self._calls: OrderedDict[str, _Turns] = OrderedDict()  # newest interviewer audio last

    def __len__(self) -> int:
        return len(self._calls)

    def on_event(self, event: protocol.Event) -> None:
        sid = event.session_id
        if isinstance(event, protocol.AgentAudioStart):
            call = self._calls.pop(sid, None) or _Turns()
            if call.voice_end_s is not None and not call.speaking:
                reply_s = event.emitted_audio_s - call.voice_end_s
                if 0.0 <= reply_s <= REPLY_WINDOW_S:
                    self._observe(reply_s)
            call.voice_end_s = None
            self._calls[sid] = call
            while len(self._calls) > self._max_calls:
                self._calls.popitem(last=False)  # the longest quiet: most likely a call that hung up
            return
        call = self._calls.get(sid)
        if call is None:
            return
        if isinstance(event, protocol.Turn) and event.state == "ended":
            del self._calls[sid]
        elif isinstance(event, protocol.SpeechStart):
            call.speaking = True
        elif isinstance(event, protocol.SpeechEnd):
            call.speaking = False
            if not event.dropped:
                call.voice_end_s = event.end_s
        elif isinstance(event, protocol.AgentAudioEnd) and not event.interrupted:
            call.voice_end_s = None  # the interviewer talked on to its end over what the candidate said

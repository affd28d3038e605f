"""The wire protocol: every message the server sends a client, one JSON object per data-channel message.

This module is a leaf: it imports nothing from Earshot, and every layer may
import it (the pipeline, the call modes and the assist agent build these
records). The README lists every event and field.

Every event has `type` and `session_id`. Times ending in `_s` are seconds on
the session's audio clock (audio received since the session began; a session
resumed after a reconnect continues its clock). `emitted_audio_s` is that clock
when the event left the pipeline, so `emitted_audio_s - speech_end_audio_s` of
a final is its latency measured in audio, end-of-speech silence included.

An utterance's life on the wire: `voice_onset` (maybe speech) -> `speech_start`
-> `partial`* -> `speech_end` -> `final` -> `intent` (or `no_final` instead of
the last two). Floats in assist payloads are rounded to 3 decimals by whoever
builds them (`r3`).

Why this module is long: it is the whole wire format in one place, one small
dataclass per event, as the README's table lists them; split, the contract
would be spread over files that each say part of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Optional, Union

EVENTS_CHANNEL = "events"  # the data channel a caller opens before its offer; events arrive on it
SPEAKERS = ("agent", "customer")  # the labelled sides of an assist call; empty in single-speaker calls


def r3(value: float) -> float:
    return round(float(value), 3)


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    session_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class Ready(Event):
    """Sent when the data channel opens: the session's settings the client should show."""

    type: ClassVar[str] = "ready"
    mode: str
    role: str
    difficulty: str
    pace_min_wps: float
    pace_max_wps: float
    resumed_finals: int  # finals already stored from before a reconnect
    speakers: list[str] = field(default_factory=list)  # the labelled tracks of an assist call
    instance: str = ""  # the server instance holding the call (instance_id): which one, after a reconnect


@dataclass(frozen=True)
class VoiceOnset(Event):
    """The VAD heard 60 ms of voice: perhaps speech, perhaps a click. A `speech_start` follows if it is speech."""

    type: ClassVar[str] = "voice_onset"
    at_s: float
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes


@dataclass(frozen=True)
class SpeechStart(Event):
    type: ClassVar[str] = "speech_start"
    utterance_id: int
    start_s: float
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes


@dataclass(frozen=True)
class Partial(Event):
    type: ClassVar[str] = "partial"
    utterance_id: int
    committed: str  # settled words: never change within the utterance
    tentative: str  # newest guess at the rest: may change
    audio_end_s: float  # end of the audio this hypothesis heard
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes


# Why an utterance ended (SpeechEnd.ended_by):
#   silence    - the end-of-speech silence ran out (`--endpointing silence`; or the model failed on this turn)
#   model      - the end-of-turn model called the turn complete during a pause
#   fallback   - the model kept calling it incomplete and the fallback silence ran out
#   short      - too little speech to ask the model about (a cough, "mm"): ended by the silence rule, ends no turn
#   length     - cut at max_utterance_s while the speaker went on
#   stream_end - the audio stopped (a file's end, a closed track)
ENDED_BY = ("silence", "model", "fallback", "short", "length", "stream_end")


@dataclass(frozen=True)
class EndOfTurnCheck:
    """One question to the end-of-turn model during a pause of an utterance."""

    silence_ms: int  # the VAD's silence when it was asked
    probability: float  # that the turn is complete
    inference_s: float  # the model's time on this call (features + ONNX run), in its worker thread
    held_by_words: bool = False  # the model said complete, but the words so far stop mid-phrase ("...of the")


@dataclass(frozen=True)
class SpeechEnd(Event):
    type: ClassVar[str] = "speech_end"
    utterance_id: int
    start_s: float
    end_s: float
    dropped: bool  # too short to be speech: no final follows
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes
    ended_by: str = "silence"  # one of ENDED_BY
    turn_complete: bool = False  # the speaker's turn is over (model or fallback): the other side may take it now
    end_of_turn_checks: list[EndOfTurnCheck] = field(default_factory=list)  # the model's answers during this utterance's pauses


@dataclass(frozen=True)
class FinalWord:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Final(Event):
    type: ClassVar[str] = "final"
    seq: int  # 1, 2, 3... over the whole session, reconnects included
    utterance_id: int
    text: str
    start: float
    end: float
    words: list[FinalWord]
    speech_end_audio_s: float  # where the VAD heard the voice end
    emitted_audio_s: float
    asr_queued_s: float
    asr_inference_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes
    redact_s: float = 0.0  # time in the redactor (server/redaction_stage.py) before this final was published
    # What was said before redaction, only where the live view may show it (assist_overlay_raw) and only
    # when something was redacted; never stored: the outbox stores `stored()`. Absent from the wire when None.
    raw_text: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        wire = super().to_dict()
        if wire["raw_text"] is None:
            del wire["raw_text"]
        return wire

    def stored(self) -> dict[str, Any]:
        """What Redis keeps of this final: everything but the raw text."""
        stored = self.to_dict()
        stored.pop("raw_text", None)
        return stored


NO_FINAL_REASONS = ("no_words", "asr_failed")


@dataclass(frozen=True)
class NoFinal(Event):
    """An utterance that ended (`speech_end`, not dropped) gets no final: Whisper found no words, or its decode failed."""

    type: ClassVar[str] = "no_final"
    utterance_id: int
    reason: str  # one of NO_FINAL_REASONS; asr_failed also sends an `error` event
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes


@dataclass(frozen=True)
class Pace(Event):
    type: ClassVar[str] = "pace"
    wps: float  # the current utterance
    window_wps: float  # the rolling window; the verdict judges this one
    window_s: float
    verdict: str  # good | too_slow | too_fast | listening
    fillers: int
    filler_counts: dict[str, int]
    long_pauses: int
    total_words: int
    voiced_s: float
    final: bool  # computed from a final (exact) rather than a partial (live)
    min_wps: float
    max_wps: float
    emitted_audio_s: float
    speaker: str = ""  # agent | customer in an assist call; empty in single-speaker modes


@dataclass(frozen=True)
class IntentLabel:
    name: str
    score: float


@dataclass(frozen=True)
class Intent(Event):
    """What an utterance is for, from the intent head: every label at or above its threshold.

    Exactly one `intent` (or an `error` with code `intent_failed`) follows
    every final when the session classifies intents; partials are classified
    only when the server is asked to (`final` is false then).
    """

    type: ClassVar[str] = "intent"
    utterance_id: int
    label_set: str  # interview | call_center
    final: bool
    text: str
    labels: list[IntentLabel]  # best first; empty when no label reaches its threshold
    scores: dict[str, float]
    inference_s: float
    emitted_audio_s: float
    speaker: str = ""


# Every code an `error` event may carry. None of them ends the call by itself
# (`no_media`, `server_draining` and `call_taken_over` are sent as the call is closed for them). Each is counted in
# earshot_errors_total{code}.
ERROR_CODES: dict[str, str] = {
    "store_unavailable": "Redis is unreachable: finals wait in memory and are saved when it returns",
    "asr_failed": "the final decode of an utterance failed",
    "no_media": "no audio frame for media_timeout_s: the call is closed",
    "intent_failed": "the intent classifier failed on an utterance (detail names it)",
    "turn_model_failed": "the end-of-turn model failed or was too slow: this turn ends by the silence rule",
    "llm_timeout": "the LLM was too slow: the bank's stock follow-up is used",
    "llm_unavailable": "the LLM failed or is unreachable: the bank's stock follow-up is used",
    "tts_failed": "the interviewer's voice failed: the interview goes on in text only",
    "report_failed": "the interview report could not be built now: it is built again when opened",
    "interviewer_failed": "the interviewer stopped on an internal error: transcription goes on",
    "server_draining": "this server instance is shutting down: the call is closed; reconnect and it resumes elsewhere",
    "call_taken_over": "another instance holds this call now (this one lost Redis too long): reconnect to resume it",
}


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str  # one of ERROR_CODES
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown error code {self.code!r}: add it to protocol.ERROR_CODES (and the README)")


# --- The interviewer's side of the conversation ---------------------------------------
# Agent utterances have their own ids (1, 2, 3... per session), apart from the
# candidate's utterance ids. Wall-clock fields are not sent: a client times
# arrival itself; `emitted_audio_s` places the event on the session's audio clock.


@dataclass(frozen=True)
class Agent(Event):
    """Words of the interviewer, sent as each sentence is released for speaking.

    The deltas of one utterance concatenate to its text; the last event of an
    utterance has `final` true (and an empty or last delta). `interrupted` is
    true on that last event when the candidate cut the interviewer off.
    """

    type: ClassVar[str] = "agent"
    utterance_id: int
    text_delta: str
    final: bool
    kind: str  # greeting | question | follow_up | hint | repeat | ack | notice | closing
    interrupted: bool = False
    emitted_audio_s: float = 0.0


@dataclass(frozen=True)
class AgentAudioStart(Event):
    """The first audible frame of an agent utterance left for the caller."""

    type: ClassVar[str] = "agent_audio_start"
    utterance_id: int
    emitted_audio_s: float


@dataclass(frozen=True)
class AgentAudioEnd(Event):
    type: ClassVar[str] = "agent_audio_end"
    utterance_id: int
    interrupted: bool
    played_s: float  # audio of the utterance actually sent
    emitted_audio_s: float


@dataclass(frozen=True)
class Turn(Event):
    """Where the interview is: greeting, asking, listening, follow_up, next, closing, ended."""

    type: ClassVar[str] = "turn"
    state: str
    question_index: int  # 1-based; 0 before the first question
    emitted_audio_s: float


@dataclass(frozen=True)
class Question(Event):
    type: ClassVar[str] = "question"
    index: int  # 1-based position in this interview
    total: int
    text: str
    question_id: str
    follow_up: bool  # a follow-up to question `index`, not a new bank question


@dataclass(frozen=True)
class ReportReady(Event):
    type: ClassVar[str] = "report_ready"
    url: str  # the report page; the JSON is at /api/sessions/{id}/report


# --- The agent-assist overlay ---------------------------------------------------------


@dataclass(frozen=True)
class AssistUpdate(Event):
    """A live assist update on the wire: one of the `AssistPayload` records below.

    The assist agent (agents/assist_agent.py) builds the payloads; the call adds the
    session and the clock. The payload's `kind` is the event's `type`, and its
    fields are the event's fields.
    """

    update: "AssistPayload"
    emitted_audio_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.update.kind,
            "session_id": self.session_id,
            **asdict(self.update),
            "emitted_audio_s": self.emitted_audio_s,
        }


# --- The agent-assist payloads --------------------------------------------------------
# Each is sent as `{"type": kind, "session_id": ..., **fields, "emitted_audio_s": ...}`
# (AssistUpdate above), so the field names here are the wire format.


@dataclass(frozen=True)
class SentimentUpdate:
    """The customer's sentiment after one of their finals, and where it is heading."""

    kind: ClassVar[str] = "sentiment"
    speaker: str
    utterance_id: int
    score: float  # VADER compound, -1 (very negative) .. 1 (very positive)
    label: str  # negative | neutral | positive
    trend: float  # -1 .. 1: the change over the last `history` scores (see agents/sentiment.py)
    trend_label: str  # worsening | steady | improving
    history: list[float]  # the last N scores, oldest first


@dataclass(frozen=True)
class TopicUpdate:
    """What the call is about; sent when the topic is first named and when it changes."""

    kind: ClassVar[str] = "topic"
    topic: str  # the topic's name in the topic file
    label: str  # its display label
    score: float  # cosine similarity of the recent talk to the topic
    source: str  # embedding | llm
    candidates: list[dict[str, Any]]  # the top 3 by embedding: {"name", "score"}
    # "named", or "unclear": the best topic's score is under the confidence floor, so no topic is
    # named (`topic` is "", `label` says so, `score` is the best one's); the overlay shows "topic unclear".
    state: str = "named"


@dataclass(frozen=True)
class SuggestionUpdate:
    """A reply the agent could say next, for one customer final.

    First from the best knowledge entry (at once), then, when an LLM is set,
    its grounded rewording or the knowledge answer again as the fallback with
    `final` true.
    """

    kind: ClassVar[str] = "suggestion"
    utterance_id: int  # the customer's utterance this answers
    text: str
    source: str  # knowledge | llm
    knowledge_ids: list[str]  # the entries it is grounded on, best first
    score: float  # the best entry's match to the customer's words (cosine); low means a guess
    final: bool  # false while an LLM may still replace it
    latency_s: float  # from the final reaching the agent to this update (monotonic clock)
    # True when the best entry's score is under the confidence floor: no suggestion rather than a
    # guess (`text` "", `knowledge_ids` [], `score` the best entry's, `source` "none").
    withheld: bool = False


@dataclass(frozen=True)
class CallMetricsUpdate:
    """Talk time, silence, rates and interruptions so far (see agents/call_metrics.py)."""

    kind: ClassVar[str] = "call_metrics"
    call_s: float
    talk_s: dict[str, float]  # per speaker
    talk_share: dict[str, float]  # per speaker; the two add up to 1 once anyone spoke
    speech_s: float  # time anyone was speaking
    silence_s: float  # call_s - speech_s
    speech_to_silence: Optional[float]  # speech_s / silence_s; None while there has been no silence
    talk_rate_wps: dict[str, float]  # per speaker: words of finals / their duration
    interruptions: dict[str, int]  # per speaker: times that speaker cut in
    overlap_s: float  # time both were speaking
    long_silences: int
    longest_silence_s: float


AssistPayload = Union[SentimentUpdate, TopicUpdate, SuggestionUpdate, CallMetricsUpdate]

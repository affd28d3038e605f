"""One settings object for the whole server.

Every knob is a field of `Settings`, checked when the object is made (every
problem is reported at once). Where the values come from (defaults, a
settings file, environment variables, flags) is server/settings_sources.py:
a new field is a new flag, a new environment variable and a new file key
without touching that code.

A field typed `Secret` (the LLM's API key) is never printed, logged or
written out: its repr is masked, and `public()` gives the settings as a
JSON-ready dict with every secret masked, for results files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


class Secret:
    """A setting's value that must never be shown: `repr` and `str` mask it; `reveal()` is the one way in."""

    __slots__ = ("_value",)
    MASK = "********"

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return self.MASK if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class Settings:
    # --- HTTP ---
    host: str = field(default="127.0.0.1", metadata=_help("address the HTTP server binds"))
    port: int = field(default=8000, metadata=_help("HTTP port"))
    max_body_bytes: int = field(default=65536, metadata=_help("largest accepted request body"))

    # --- Redis ---
    redis_url: str = field(
        default="",
        metadata=_help("Redis URL; empty starts a private redis-server under data_dir"),
    )
    data_dir: Path = field(
        default=Path(".earshot"),
        metadata=_help("where the private Redis and joined model files live"),
    )
    session_ttl_s: int = field(default=86400, metadata=_help("how long a session is kept in Redis"))

    # --- ASR ---
    asr_model: str = field(
        default="tiny.en",
        metadata=_help("bundled model name (tiny.en, base) or a CTranslate2 Whisper directory"),
    )
    asr_device: str = field(default="cpu", metadata=_help("cpu, cuda or auto"))
    asr_compute_type: str = field(default="int8", metadata=_help("CTranslate2 compute type"))
    asr_threads: int = field(default=0, metadata=_help("CPU threads per decode; 0 = the cores shared out between the workers"))
    asr_workers: int = field(default=0, metadata=_help("decodes run at once on the shared model; 0 = one per core (at most 4)"))
    asr_language: str = field(default="en", metadata=_help("spoken language code"))
    asr_beam_size: int = field(default=5, metadata=_help("beam size of final decodes"))
    asr_beam_max_s: float = field(
        default=10.0, metadata=_help("finals of longer utterances decode greedily, to bound their latency")
    )
    asr_trim_window: bool = field(
        default=True, metadata=_help("decode each utterance in a window cut to its length, not 30 s")
    )
    asr_scheduling: str = field(
        default="fair",
        metadata=_help("fair (finals first, newest partial per call, round-robin) or fifo (arrival order; a baseline)"),
    )
    asr_max_batch: int = field(
        default=1, metadata=_help("partials of different calls decoded together in one model call; 1 = no batching")
    )
    asr_no_speech_threshold: float = field(
        default=0.6, metadata=_help("drop a segment above this no-speech probability...")
    )
    asr_log_prob_threshold: float = field(
        default=-1.0, metadata=_help("...when its average log-probability is below this")
    )
    asr_compression_ratio_threshold: float = field(
        default=2.4, metadata=_help("drop repetitive text above this gzip compression ratio")
    )

    # --- VAD and streaming ---
    vad_aggressiveness: int = field(default=2, metadata=_help("webrtcvad mode, 0 (lenient) to 3 (strict)"))
    vad_frame_ms: int = field(default=30, metadata=_help("VAD frame length: 10, 20 or 30 ms"))
    speech_start_ms: int = field(
        default=90, metadata=_help("voiced audio needed within 150 ms to open an utterance")
    )
    pre_roll_ms: int = field(default=300, metadata=_help("audio kept before speech start"))
    end_of_speech_ms: int = field(default=500, metadata=_help("silence that ends an utterance"))
    min_speech_ms: int = field(
        default=250, metadata=_help("utterances with less voiced audio (webrtcvad, then Silero) are not decoded")
    )
    partial_interval_ms: int = field(default=400, metadata=_help("new audio between partial hypotheses"))
    max_utterance_s: float = field(default=25.0, metadata=_help("force a final after this much speech"))

    # --- Pace ---
    pace_min_wps: float = field(default=1.0, metadata=_help("slowest good pace, words per second"))
    pace_max_wps: float = field(default=3.0, metadata=_help("fastest good pace, words per second"))
    pace_window_s: float = field(default=30.0, metadata=_help("rolling window for the pace verdict"))
    long_pause_s: float = field(default=2.0, metadata=_help("a pause at least this long is counted"))

    # --- Interviewer: turn-taking and limits ---
    turn_pause_ms: int = field(
        default=700, metadata=_help("silence after a final before the interviewer takes its turn")
    )
    answer_timeout_s: float = field(
        default=20.0, metadata=_help("no answer this long after a question: ask again once, then move on")
    )
    interview_questions: int = field(default=5, metadata=_help("questions per interview"))
    interview_max_minutes: float = field(
        default=30.0, metadata=_help("the interviewer wraps up after this long")
    )
    max_follow_ups: int = field(default=1, metadata=_help("follow-up questions per bank question"))
    barge_in: bool = field(
        default=True, metadata=_help("candidate speech stops the interviewer's voice")
    )
    question_dir: str = field(
        default="", metadata=_help("directory of question bank JSON files; empty = the bundled bank")
    )

    # --- LLM ---
    llm_backend: str = field(
        default="embedded", metadata=_help("embedded (in-process llama.cpp) or http (OpenAI-compatible, e.g. vLLM)")
    )
    llm_model: str = field(
        default="",
        metadata=_help("embedded: GGUF file, empty = bundled SmolLM2-135M-Instruct; http: the served model name"),
    )
    llm_url: str = field(
        default="", metadata=_help("base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8001/v1")
    )
    llm_api_key: Secret = field(
        default=Secret(), metadata=_help("bearer key for the HTTP backend, if it needs one (never shown)")
    )
    llm_threads: int = field(default=0, metadata=_help("CPU threads of the embedded LLM; 0 = all cores"))
    llm_max_tokens: int = field(default=60, metadata=_help("longest reply the LLM may generate"))
    llm_first_token_timeout_s: float = field(
        default=3.0, metadata=_help("no first token by then: use a stock follow-up")
    )
    llm_timeout_s: float = field(default=8.0, metadata=_help("a whole LLM reply must finish within this"))

    # --- Voice out and report ---
    tts_voice: str = field(
        default="", metadata=_help("piper voice .onnx file (its .onnx.json beside it); empty = bundled joe")
    )
    tts_enabled: bool = field(default=True, metadata=_help("speak the interviewer's words; off = text only"))
    encoder_model: str = field(
        default="", metadata=_help("sentence-transformers directory for key-point matching; empty = bundled MiniLM")
    )
    key_point_threshold: float = field(
        default=0.5, metadata=_help("cosine similarity at which an answer sentence covers a key point")
    )
    grammar_llm: str = field(
        default="auto", metadata=_help("LLM grammar review in reports: auto (http backend only), on or off")
    )

    # --- Intent head ---
    intent_enabled: bool = field(
        default=True, metadata=_help("classify every final with the intent head (interview and assist calls)")
    )
    intent_heads_dir: str = field(
        default="", metadata=_help("directory of trained intent heads (earshot train-intent --out); empty = bundled")
    )
    intent_encoder: str = field(
        default="", metadata=_help("encoder directory for the intent heads; empty = the one they were trained on")
    )
    intent_partials: bool = field(
        default=False, metadata=_help("also classify the settled words of partials (more events, more CPU)")
    )

    # --- Agent assist ---
    assist_knowledge: str = field(
        default="", metadata=_help("JSON file of canned answers for suggested replies; empty = the bundled example")
    )
    assist_topics: str = field(default="", metadata=_help("JSON file of call topics; empty = the bundled list"))
    assist_topic_llm: str = field(
        default="auto", metadata=_help("name the topic with the LLM: auto (http backend only), on or off (embeddings)")
    )
    assist_suggest_llm: bool = field(
        default=True, metadata=_help("let the LLM word suggested replies from the canned answers; off = canned only")
    )
    long_silence_s: float = field(default=3.0, metadata=_help("a silence in a call at least this long is counted"))

    # --- WebRTC ---
    ice_loopback_only: bool = field(
        default=False,
        metadata=_help("offer only 127.0.0.1 ICE candidates (tests, load tests, one-box demos)"),
    )

    ice_servers: str = field(
        default="",
        metadata=_help("comma-separated STUN/TURN URLs for callers behind NAT; empty = host candidates only"),
    )
    connect_timeout_s: float = field(
        default=30.0, metadata=_help("a call whose ICE/DTLS has not connected this long after its offer is closed")
    )
    media_timeout_s: float = field(
        default=15.0, metadata=_help("a connected call that sends no audio this long is closed (a vanished caller)")
    )

    def __post_init__(self) -> None:
        problems: list[str] = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        check(0 < self.port < 65536, f"port must be 1-65535, got {self.port}")
        check(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
        check(self.session_ttl_s > 0, "session_ttl_s must be positive")
        check(
            not self.redis_url or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            f"redis_url must start with redis://, rediss:// or unix://, got {self.redis_url!r}",
        )
        check(self.asr_device in ("cpu", "cuda", "auto"), f"asr_device must be cpu, cuda or auto, got {self.asr_device!r}")
        check(self.asr_threads >= 0, "asr_threads must be >= 0")
        check(0 <= self.asr_workers <= 16, "asr_workers must be in 0..16")
        check(self.asr_beam_size >= 1, "asr_beam_size must be >= 1")
        check(self.asr_beam_max_s >= 0, "asr_beam_max_s must be >= 0")
        check(self.asr_scheduling in ("fair", "fifo"), f"asr_scheduling must be fair or fifo, got {self.asr_scheduling!r}")
        check(1 <= self.asr_max_batch <= 32, "asr_max_batch must be in 1..32")
        check(0.0 < self.asr_no_speech_threshold <= 1.0, "asr_no_speech_threshold must be in (0, 1]")
        check(self.vad_aggressiveness in (0, 1, 2, 3), "vad_aggressiveness must be 0, 1, 2 or 3")
        check(self.vad_frame_ms in (10, 20, 30), "vad_frame_ms must be 10, 20 or 30")
        check(0 < self.speech_start_ms <= 150, "speech_start_ms must be in 1..150")
        check(0 <= self.pre_roll_ms <= 1000, "pre_roll_ms must be in 0..1000")
        check(100 <= self.end_of_speech_ms <= 5000, "end_of_speech_ms must be in 100..5000")
        check(self.min_speech_ms >= 0, "min_speech_ms must be >= 0")
        check(100 <= self.partial_interval_ms <= 5000, "partial_interval_ms must be in 100..5000")
        check(2.0 <= self.max_utterance_s <= 28.0, "max_utterance_s must be in 2..28 (Whisper sees 30 s at most)")
        check(0 < self.pace_min_wps < self.pace_max_wps, "need 0 < pace_min_wps < pace_max_wps")
        check(self.pace_window_s > 0, "pace_window_s must be positive")
        check(self.long_pause_s > 0, "long_pause_s must be positive")
        check(0 <= self.turn_pause_ms <= 10000, "turn_pause_ms must be in 0..10000")
        check(self.answer_timeout_s >= 3, "answer_timeout_s must be at least 3")
        check(1 <= self.interview_questions <= 50, "interview_questions must be in 1..50")
        check(self.interview_max_minutes > 0, "interview_max_minutes must be positive")
        check(0 <= self.max_follow_ups <= 5, "max_follow_ups must be in 0..5")
        check(self.llm_backend in ("embedded", "http"), f"llm_backend must be embedded or http, got {self.llm_backend!r}")
        check(
            self.llm_backend != "http" or self.llm_url.startswith(("http://", "https://")),
            "llm_backend http needs llm_url, e.g. http://127.0.0.1:8001/v1",
        )
        check(self.llm_threads >= 0, "llm_threads must be >= 0")
        check(8 <= self.llm_max_tokens <= 1024, "llm_max_tokens must be in 8..1024")
        check(0 < self.llm_first_token_timeout_s <= self.llm_timeout_s, "need 0 < llm_first_token_timeout_s <= llm_timeout_s")
        check(0.0 < self.key_point_threshold < 1.0, "key_point_threshold must be in (0, 1)")
        check(self.grammar_llm in ("auto", "on", "off"), "grammar_llm must be auto, on or off")
        check(self.assist_topic_llm in ("auto", "on", "off"), "assist_topic_llm must be auto, on or off")
        check(self.connect_timeout_s >= 1, "connect_timeout_s must be at least 1")
        check(self.media_timeout_s >= 1, "media_timeout_s must be at least 1")
        check(self.long_silence_s > 0, "long_silence_s must be positive")
        if problems:
            raise SettingsError("invalid settings:\n  - " + "\n  - ".join(problems))

    def public(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, secrets masked: what a results file may record."""
        return {f.name: _public(getattr(self, f.name)) for f in fields(self)}

    @property
    def ice_server_urls(self) -> tuple[str, ...]:
        return tuple(url.strip() for url in self.ice_servers.split(",") if url.strip())


def _public(value: Any) -> Any:
    if isinstance(value, (Secret, Path)):
        return str(value)
    return value

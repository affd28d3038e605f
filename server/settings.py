"""One settings object for the whole server.

Every knob is a field of `Settings`, checked when the object is made (every
problem is reported at once). Where the values come from (defaults, a
settings file, environment variables, flags) is server/settings_sources.py:
a new field is a new flag, a new environment variable and a new file key
without touching that code.

A field typed `Secret` (the LLM's API key) is never printed, logged or
written out: its repr is masked, and `public()` gives the settings as a
JSON-ready dict with every secret masked, for results files.

Why this module is long: `Settings` is one flat list of fields, each with its
help text, because a flat field is what becomes a flag, an environment
variable and a file key with no code of its own; splitting it into nested
objects would give every setting a longer name and the sources module a
walker. Its checks live in server/settings_checks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from earshot.server.settings_checks import comma_list, settings_problems


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
    header_timeout_s: float = field(
        default=10.0, metadata=_help("a request whose headers have not all arrived this long after it began is dropped")
    )
    body_timeout_s: float = field(
        default=10.0, metadata=_help("a request body that has not all arrived this long after the headers: 408")
    )

    # --- HTTPS and browser safety (server/security.py, server/tls.py) ---
    tls: str = field(
        default="",
        metadata=_help("self-signed: make a certificate for this machine's names and addresses (LAN demos); "
                       "empty = tls_cert/tls_key if given, else plain HTTP"),
    )
    tls_cert: str = field(default="", metadata=_help("PEM certificate (chain) to serve HTTPS with"))
    tls_key: str = field(default="", metadata=_help("PEM private key of tls_cert"))
    allowed_hosts: str = field(
        default="",
        metadata=_help("comma-separated Host names the server answers besides the loopback names (* = any); "
                       "empty = this machine's names and addresses when bound beyond loopback or with tls self-signed"),
    )
    allowed_origins: str = field(
        default="",
        metadata=_help("comma-separated extra origins (https://app.example.com) that may make state-changing "
                       "requests; the page's own origin always may"),
    )

    # --- Redis ---
    redis_url: str = field(
        default="",
        metadata=_help("Redis URL; empty starts a private redis-server under data_dir"),
    )
    data_dir: Path = field(
        default=Path(".earshot"),
        metadata=_help("where the private Redis and joined model files live"),
    )

    # --- Protecting what is stored (server/at_rest.py, server/retention.py, server/audit.py) ---
    storage_key: Secret = field(
        default=Secret(),
        metadata=_help("base64 of a 32-byte AES-256 key that encrypts what is stored (never shown); "
                       "empty = the keys in storage_key_file"),
    )
    storage_key_file: str = field(
        default="",
        metadata=_help("file of storage keys (the last one encrypts, all decrypt); "
                       "empty = data_dir/keys/storage.keys, made (mode 0600) on first start"),
    )
    retention_live_s: int = field(
        default=86400,
        metadata=_help("a session's live state (where a reconnect resumes, the interview's state, pace) "
                       "is deleted this long after the session was created"),
    )
    retention_transcripts_s: int = field(
        default=7 * 86400, metadata=_help("a session's transcript is deleted this long after the session was created")
    )
    retention_reports_s: int = field(
        default=30 * 86400,
        metadata=_help("an interview's report and an assist call's summary are deleted this long after "
                       "the session was created"),
    )
    audit_retention_s: int = field(
        default=365 * 86400, metadata=_help("audit entries older than this are dropped from the audit stream")
    )

    # --- Redaction (models/redaction/) ---
    redact_interview: str = field(
        default="all",
        metadata=_help("what is redacted from interview transcripts before they are stored, logged or sent to "
                       "an LLM: all, none, or a comma list of card, phone, email, id, iban, account, dob, "
                       "address, name"),
    )
    redact_assist: str = field(default="all", metadata=_help("what is redacted from assist calls (as redact_interview)"))
    redact_transcribe: str = field(
        default="all", metadata=_help("what is redacted from transcribe sessions (as redact_interview)")
    )
    assist_overlay_raw: bool = field(
        default=False,
        metadata=_help("the agent's live overlay shows finals unredacted (to read back an order number); "
                       "what is stored and sent to an LLM stays redacted"),
    )

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
    vad_noise_gate_db: float = field(
        default=40.0, metadata=_help("a frame webrtcvad calls voiced is noise this many dB below the voice's level (0: off)")
    )
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

    # --- End of turn (server/endpointing.py) ---
    endpointing: str = field(
        default="model",
        metadata=_help(
            "how the end of a turn is found: model (the Smart Turn v3 audio model, asked at short pauses) "
            "or silence (end_of_speech_ms of silence ends an utterance, turn_pause_ms more hands over the turn)"
        ),
    )
    end_of_turn_model: str = field(
        default="", metadata=_help("Smart Turn v3 .onnx file; empty = the one in the pipecat-ai package")
    )
    end_of_turn_threshold: float = field(
        default=0.9, metadata=_help("the turn is complete when the model's probability is above this")
    )
    end_of_turn_checks_ms: str = field(
        default="200", metadata=_help("silences (ms, comma-separated) in a pause at which the model is asked")
    )
    end_of_turn_fallback_ms: int = field(
        default=2500, metadata=_help("silence that ends a turn the model keeps calling incomplete")
    )
    end_of_turn_min_speech_ms: int = field(
        default=500,
        metadata=_help("utterances with less voiced audio (as the VAD counts it: about 0.2 s more than the sound) "
                       "are never a turn: not asked about, ended by the silence rule"),
    )
    end_of_turn_timeout_ms: int = field(
        default=1000, metadata=_help("a model call slower than this counts as failed: the turn ends by silence")
    )
    end_of_turn_check_words: bool = field(
        default=True,
        metadata=_help("hold a turn the model calls complete when its words so far stop mid-phrase (\"...of the\", \"um\")"),
    )
    end_of_turn_threads: int = field(default=1, metadata=_help("ONNX Runtime threads of the end-of-turn model"))

    # --- Pace ---
    pace_min_wps: float = field(default=1.0, metadata=_help("slowest good pace, words per second"))
    pace_max_wps: float = field(default=3.0, metadata=_help("fastest good pace, words per second"))
    pace_window_s: float = field(default=30.0, metadata=_help("rolling window for the pace verdict"))
    long_pause_s: float = field(default=2.0, metadata=_help("a pause at least this long is counted"))

    # --- Interviewer: turn-taking and limits ---
    turn_pause_ms: int = field(
        default=700, metadata=_help("silence after a final before the interviewer takes its turn")
    )
    reply_gap_ms: int = field(
        default=200,
        metadata=_help("after a turn the end-of-turn model called complete, the interviewer waits this long before it speaks: "
                       "a candidate who goes on within it keeps the turn"),
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
    encoder_backend: str = field(
        default="onnx", metadata=_help("run the sentence encoder on onnx (ONNX Runtime, BERT-family encoders) or torch")
    )
    encoder_onnx_cache: str = field(
        default="", metadata=_help("where the encoder's local ONNX export is kept; empty = ~/.cache/earshot/onnx")
    )
    encoder_cache_size: int = field(
        default=1024, metadata=_help("texts whose encoder vectors are kept, so intents, topics and knowledge share a pass")
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
    # Both chosen by bench/support_bench.py's offline sweep on the six voiced support calls (bench/README.md).
    assist_topic_floor: float = field(
        default=0.4, metadata=_help("a topic matching the recent talk below this (cosine) is shown as 'topic unclear'")
    )
    assist_suggestion_floor: float = field(
        default=0.4, metadata=_help("no suggested reply when the best knowledge entry matches below this (cosine)")
    )

    # --- WebRTC ---
    ice_loopback_only: bool = field(
        default=False,
        metadata=_help("offer only 127.0.0.1 ICE candidates (tests, load tests, one-box demos)"),
    )

    ice_addresses: str = field(
        default="",
        metadata=_help("comma-separated IP addresses the server's answer may offer as host candidates; "
                       "empty = every host address (127.0.0.1 only with ice_loopback_only)"),
    )
    ice_servers: str = field(
        default="",
        metadata=_help("comma-separated STUN/TURN URLs (stun:, turn:, turns:) for callers behind NAT, used by "
                       "the browser and the server; empty = host candidates only"),
    )
    turn_secret: Secret = field(
        default=Secret(),
        metadata=_help("TURN REST shared secret (coturn static-auth-secret): each session gets its own "
                       "expiring TURN username and password for the turn: URLs (never shown)"),
    )
    turn_username: str = field(
        default="", metadata=_help("a fixed TURN username, when the TURN server has no shared secret")
    )
    turn_password: Secret = field(default=Secret(), metadata=_help("the fixed TURN username's password (never shown)"))
    turn_ttl_s: int = field(
        default=14400, metadata=_help("lifetime of a session's TURN credentials; longer than the longest call")
    )
    connect_timeout_s: float = field(
        default=30.0, metadata=_help("a call whose ICE/DTLS has not connected this long after its offer is closed")
    )
    media_timeout_s: float = field(
        default=15.0, metadata=_help("a connected call that sends no audio this long is closed (a vanished caller)")
    )

    # --- Access (server/auth.py) ---
    auth: str = field(
        default="none",
        metadata=_help("none (anyone who reaches the port; loopback only unless insecure_allow_anyone), "
                       "or on: OIDC bearer tokens (oidc_issuer) and/or API keys (api_keys_file)"),
    )
    insecure_allow_anyone: bool = field(
        default=False, metadata=_help("allow auth none on an address beyond loopback (anyone may use the server)")
    )
    oidc_issuer: str = field(default="", metadata=_help("identity provider's issuer URL (the tokens' iss)"))
    oidc_audience: str = field(default="", metadata=_help("the tokens' required aud (this API's client id)"))
    oidc_jwks_url: str = field(
        default="", metadata=_help("the provider's JWKS URL; empty = <oidc_issuer>/.well-known/jwks.json")
    )
    oidc_roles_claim: str = field(default="roles", metadata=_help("claim listing the caller's Earshot roles"))
    oidc_team_claim: str = field(default="team", metadata=_help("claim naming the caller's team"))
    api_keys_file: str = field(
        default="", metadata=_help("TOML file of static API keys (their SHA-256), each with a name, role and team")
    )
    internal_port: int = field(
        default=0,
        metadata=_help("port for /metrics and the detailed /healthz, on internal_host; 0 = on the main port, admin only"),
    )
    internal_host: str = field(
        default="127.0.0.1",
        metadata=_help("address the internal port binds: loopback, or a pod's own address for Prometheus "
                       "(0.0.0.0), where a network policy keeps it to the monitoring namespace"),
    )

    # --- Limits (server/limits.py) ---
    rate_sessions_per_min: int = field(
        default=30, metadata=_help("sessions one identity (or IP address) may create per minute; 0 = no limit")
    )
    rate_offers_per_min: int = field(
        default=60, metadata=_help("offers one identity (or IP address) may send per minute; 0 = no limit")
    )
    max_pending_sessions: int = field(
        default=200, metadata=_help("sessions created but never connected, kept at once; past it: 503 at_capacity")
    )
    pending_session_ttl_s: int = field(
        default=600, metadata=_help("a session that never connects is deleted after this long")
    )
    max_live_calls: int = field(
        default=6,
        metadata=_help("live calls at once, past which an offer gets 503 at_capacity; set it to the capacity "
                       "make bench measures on your box (6 on the 2-core reference machine)"),
    )
    redis_maxmemory: str = field(
        default="256mb", metadata=_help("maxmemory of the private Redis (policy noeviction: writes fail, nothing is evicted)")
    )

    # --- Many instances on one Redis (server/cluster.py) ---
    instance_id: str = field(
        default="", metadata=_help("this instance's name among those sharing Redis (a pod's name); empty = host name and process id")
    )
    instance_group: str = field(
        default="default",
        metadata=_help("instances with the same group on one Redis place sessions among themselves "
                       "(one group per deployment sharing a Redis)"),
    )
    advertise_url: str = field(
        default="",
        metadata=_help("the URL other instances reach this one's HTTP port at (http://<pod IP>:8000); "
                       "empty = http://<host>:<port>, with 127.0.0.1 for a wildcard host"),
    )
    instance_ttl_s: float = field(
        default=5.0,
        metadata=_help("an instance that has not renewed its heartbeat this long is out of placement, "
                       "and another may take over its calls"),
    )
    drain_grace_s: float = field(
        default=25.0,
        metadata=_help("after SIGTERM, how long live calls may go on before they are closed (reconnect elsewhere); "
                       "keep it below Kubernetes' terminationGracePeriodSeconds"),
    )
    # --- After the call: analytics (server/analytics_stream.py, server/analytics_worker.py) ---
    analytics_enabled: bool = field(
        default=True, metadata=_help("put each ended call on the analytics stream for `earshot analytics-worker`")
    )
    analytics_claim_idle_s: float = field(
        default=30.0,
        metadata=_help("a message a worker took and has not finished this long is taken by another "
                       "(the first crashed or failed): also the wait before a failed message is tried again"),
    )
    analytics_max_tries: int = field(
        default=5, metadata=_help("a message that failed this many times goes to the dead-letter stream")
    )
    analytics_used_similarity: float = field(
        default=0.45,
        metadata=_help("a suggestion counts as used when the agent's next words reach this cosine similarity to it "
                       "(chosen on bench/support_calls: 16 of 30 expert replies reach 0.45, none of 30 random entries)"),
    )
    analytics_metrics_port: int = field(
        default=9102, metadata=_help("the analytics worker serves the manager's metrics at /metrics on this port (0 = none)")
    )
    analytics_abandoned_after_s: float = field(
        default=600.0,
        metadata=_help("a call whose connection closed with no DELETE (or whose instance died) is ended and analysed "
                       "this long after it closed (or was last live), unless resumed meanwhile "
                       "(0 = never: it stays resumable and is not analysed)"),
    )

    # --- Call recording and re-scoring (server/recording.py, server/rescoring.py) ---
    recording: bool = field(
        default=False,
        metadata=_help("record each call's audio, per track, encrypted with the storage keys, for re-scoring "
                       "after the call (off: no audio is kept)"),
    )
    recording_format: str = field(default="flac", metadata=_help("flac (lossless, 17 kB/s of speech) or opus (Ogg Opus, 3.6 kB/s)"))
    recording_dir: str = field(default="", metadata=_help("where recordings are kept; empty = data_dir/recordings"))
    retention_recordings_s: int = field(
        default=7 * 86400, metadata=_help("a call's recording is deleted this long after the session was created")
    )
    rescore_asr_model: str = field(
        default="base",
        metadata=_help("the Whisper that re-transcribes a recorded call: a bundled name (base, tiny.en) or a "
                       "CTranslate2 Whisper directory"),
    )

    def __post_init__(self) -> None:
        problems = settings_problems(self)
        if problems:
            raise SettingsError("invalid settings:\n  - " + "\n  - ".join(problems))

    def public(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, secrets masked: what a results file may record."""
        return {f.name: _public(getattr(self, f.name)) for f in fields(self)}

    @property
    def end_of_turn_checks(self) -> tuple[int, ...]:
        """`end_of_turn_checks_ms` as sorted integers."""
        return tuple(sorted({int(part) for part in comma_list(self.end_of_turn_checks_ms)}))

    @property
    def ice_server_urls(self) -> tuple[str, ...]:
        return comma_list(self.ice_servers)


def _public(value: Any) -> Any:
    if isinstance(value, (Secret, Path)):
        return str(value)
    return value

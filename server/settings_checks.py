"""The checks every `Settings` passes when it is made: each problem is reported, all at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from earshot.models.redaction.kinds import KindsError, parse_kinds
from earshot.server.machine_names import is_ip

if TYPE_CHECKING:
    from earshot.server.settings import Settings


def settings_problems(s: "Settings") -> list[str]:
    problems: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(0 < s.port < 65536, f"port must be 1-65535, got {s.port}")
    check(s.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
    check(
        not s.redis_url or s.redis_url.startswith(("redis://", "rediss://", "unix://")),
        f"redis_url must start with redis://, rediss:// or unix://, got {s.redis_url!r}",
    )
    check(s.asr_device in ("cpu", "cuda", "auto"), f"asr_device must be cpu, cuda or auto, got {s.asr_device!r}")
    check(s.asr_threads >= 0, "asr_threads must be >= 0")
    check(0 <= s.asr_workers <= 16, "asr_workers must be in 0..16")
    check(s.asr_beam_size >= 1, "asr_beam_size must be >= 1")
    check(s.asr_beam_max_s >= 0, "asr_beam_max_s must be >= 0")
    check(s.asr_scheduling in ("fair", "fifo"), f"asr_scheduling must be fair or fifo, got {s.asr_scheduling!r}")
    check(1 <= s.asr_max_batch <= 32, "asr_max_batch must be in 1..32")
    check(0.0 < s.asr_no_speech_threshold <= 1.0, "asr_no_speech_threshold must be in (0, 1]")
    check(s.vad_aggressiveness in (0, 1, 2, 3), "vad_aggressiveness must be 0, 1, 2 or 3")
    check(s.vad_frame_ms in (10, 20, 30), "vad_frame_ms must be 10, 20 or 30")
    check(0.0 <= s.vad_noise_gate_db <= 90.0, "vad_noise_gate_db must be 0 (off) to 90")
    check(0 <= s.reply_gap_ms <= 5000, "reply_gap_ms must be 0 to 5000")
    check(0 < s.speech_start_ms <= 150, "speech_start_ms must be in 1..150")
    check(0 <= s.pre_roll_ms <= 1000, "pre_roll_ms must be in 0..1000")
    check(100 <= s.end_of_speech_ms <= 5000, "end_of_speech_ms must be in 100..5000")
    check(s.min_speech_ms >= 0, "min_speech_ms must be >= 0")
    check(100 <= s.partial_interval_ms <= 5000, "partial_interval_ms must be in 100..5000")
    check(2.0 <= s.max_utterance_s <= 28.0, "max_utterance_s must be in 2..28 (Whisper sees 30 s at most)")
    check(0 < s.pace_min_wps < s.pace_max_wps, "need 0 < pace_min_wps < pace_max_wps")
    check(s.pace_window_s > 0, "pace_window_s must be positive")
    check(s.long_pause_s > 0, "long_pause_s must be positive")
    check(0 <= s.turn_pause_ms <= 10000, "turn_pause_ms must be in 0..10000")
    check(s.endpointing in ("model", "silence"), f"endpointing must be model or silence, got {s.endpointing!r}")
    check(0.0 < s.end_of_turn_threshold < 1.0, "end_of_turn_threshold must be in (0, 1)")
    checks = comma_list(s.end_of_turn_checks_ms)
    check(
        bool(checks) and all(c.isdigit() and 60 <= int(c) < s.end_of_turn_fallback_ms for c in checks),
        "end_of_turn_checks_ms must be a comma list of whole milliseconds, each in 60..end_of_turn_fallback_ms",
    )
    check(500 <= s.end_of_turn_fallback_ms <= 10000, "end_of_turn_fallback_ms must be in 500..10000")
    check(0 <= s.end_of_turn_min_speech_ms <= 5000, "end_of_turn_min_speech_ms must be in 0..5000")
    check(50 <= s.end_of_turn_timeout_ms <= 10000, "end_of_turn_timeout_ms must be in 50..10000")
    check(1 <= s.end_of_turn_threads <= 16, "end_of_turn_threads must be in 1..16")
    check(s.answer_timeout_s >= 3, "answer_timeout_s must be at least 3")
    check(1 <= s.interview_questions <= 50, "interview_questions must be in 1..50")
    check(s.interview_max_minutes > 0, "interview_max_minutes must be positive")
    check(0 <= s.max_follow_ups <= 5, "max_follow_ups must be in 0..5")
    check(s.llm_backend in ("embedded", "http"), f"llm_backend must be embedded or http, got {s.llm_backend!r}")
    check(
        s.llm_backend != "http" or s.llm_url.startswith(("http://", "https://")),
        "llm_backend http needs llm_url, e.g. http://127.0.0.1:8001/v1",
    )
    check(s.llm_threads >= 0, "llm_threads must be >= 0")
    check(8 <= s.llm_max_tokens <= 1024, "llm_max_tokens must be in 8..1024")
    check(0 < s.llm_first_token_timeout_s <= s.llm_timeout_s, "need 0 < llm_first_token_timeout_s <= llm_timeout_s")
    check(0.0 < s.key_point_threshold < 1.0, "key_point_threshold must be in (0, 1)")
    check(s.grammar_llm in ("auto", "on", "off"), "grammar_llm must be auto, on or off")
    check(s.assist_topic_llm in ("auto", "on", "off"), "assist_topic_llm must be auto, on or off")
    check(-1.0 <= s.assist_topic_floor <= 1.0, "assist_topic_floor must be in -1..1 (a cosine similarity)")
    check(-1.0 <= s.assist_suggestion_floor <= 1.0, "assist_suggestion_floor must be in -1..1 (a cosine similarity)")
    check(s.encoder_backend in ("onnx", "torch"), "encoder_backend must be onnx or torch")
    check(s.encoder_cache_size >= 0, "encoder_cache_size must be 0 or more")
    check(s.connect_timeout_s >= 1, "connect_timeout_s must be at least 1")
    check(s.media_timeout_s >= 1, "media_timeout_s must be at least 1")
    check(s.long_silence_s > 0, "long_silence_s must be positive")
    # HTTPS
    check(s.tls in ("", "self-signed"), f"tls must be empty or self-signed, got {s.tls!r}")
    check(bool(s.tls_cert) == bool(s.tls_key), "tls_cert and tls_key go together")
    check(not (s.tls and s.tls_cert), "tls self-signed and tls_cert/tls_key exclude each other")
    check(s.header_timeout_s > 0, "header_timeout_s must be positive")
    check(s.body_timeout_s > 0, "body_timeout_s must be positive")
    # ICE and TURN
    bad_urls = [url for url in s.ice_server_urls if not url.startswith(("stun:", "turn:", "turns:"))]
    check(not bad_urls, f"ice_servers entries must start with stun:, turn: or turns:, got {', '.join(bad_urls)}")
    bad_addresses = [address for address in comma_list(s.ice_addresses) if not is_ip(address)]
    check(not bad_addresses, f"ice_addresses must be IP addresses, got {', '.join(bad_addresses)}")
    check(
        not (s.ice_loopback_only and s.ice_addresses),
        "ice_loopback_only and ice_addresses exclude each other (ice_loopback_only is ice_addresses 127.0.0.1)",
    )
    check(s.turn_ttl_s >= 60, "turn_ttl_s must be at least 60")
    has_turn_url = any(url.startswith("turn") for url in s.ice_server_urls)
    check(not (s.turn_secret or s.turn_username) or has_turn_url, "turn_secret and turn_username need a turn: or turns: URL in ice_servers")
    # a browser refuses to build a peer connection with a TURN URL that has no credentials
    check(not has_turn_url or bool(s.turn_secret or s.turn_username), "turn: and turns: URLs need turn_secret or turn_username")
    check(not (s.turn_secret and s.turn_username), "turn_secret (minted credentials) and turn_username exclude each other")
    check(bool(s.turn_username) == bool(s.turn_password), "turn_username and turn_password go together")
    # Access
    check(s.auth in ("none", "on"), f"auth must be none or on, got {s.auth!r}")
    check(s.auth != "on" or bool(s.oidc_issuer or s.api_keys_file), "auth on needs oidc_issuer or api_keys_file")
    check(not s.oidc_issuer or bool(s.oidc_audience), "oidc_issuer needs oidc_audience")
    check(0 <= s.internal_port < 65536, "internal_port must be 0-65535")
    check(s.internal_port != s.port, "internal_port must differ from port")  # 0 never equals a valid port
    # Limits
    check(s.rate_sessions_per_min >= 0, "rate_sessions_per_min must be >= 0")
    check(s.rate_offers_per_min >= 0, "rate_offers_per_min must be >= 0")
    check(s.max_pending_sessions >= 1, "max_pending_sessions must be at least 1")
    check(s.pending_session_ttl_s >= 30, "pending_session_ttl_s must be at least 30")
    check(s.max_live_calls >= 1, "max_live_calls must be at least 1")
    # Many instances on one Redis
    check(1.0 <= s.instance_ttl_s <= 60.0, "instance_ttl_s must be 1-60 seconds")
    check(0.0 <= s.drain_grace_s <= 3600.0, "drain_grace_s must be 0-3600 seconds")
    check(not s.advertise_url or s.advertise_url.startswith(("http://", "https://")),
          "advertise_url must be an http:// or https:// URL")
    check(0 < len(s.instance_group) <= 64 and all(c.isalnum() or c in "-_." for c in s.instance_group),
          "instance_group may hold letters, digits, '-', '_' and '.' only (1-64)")
    check(len(s.instance_id) <= 128 and all(c.isalnum() or c in "-_." for c in s.instance_id),
          "instance_id may hold letters, digits, '-', '_' and '.' only (at most 128)")
    # What is stored, and for how long
    for name in ("retention_live_s", "retention_transcripts_s", "retention_reports_s", "audit_retention_s",
                 "retention_recordings_s"):
        check(getattr(s, name) >= 60, f"{name} must be at least 60")
    check(s.recording_format in ("flac", "opus"), "recording_format must be flac or opus")
    for name in ("redact_interview", "redact_assist", "redact_transcribe"):
        try:
            parse_kinds(getattr(s, name))
        except KindsError as exc:
            problems.append(f"{name}: {exc}")
    # After the call
    check(s.analytics_claim_idle_s > 0, "analytics_claim_idle_s must be > 0")
    check(1 <= s.analytics_max_tries <= 100, "analytics_max_tries must be in 1..100")
    check(0.0 <= s.analytics_used_similarity <= 1.0, "analytics_used_similarity must be in 0..1")
    check(0 <= s.analytics_metrics_port < 65536, "analytics_metrics_port must be 0 (none) to 65535")
    check(
        s.analytics_abandoned_after_s == 0 or s.analytics_abandoned_after_s >= 60,
        "analytics_abandoned_after_s must be 0 (never) or at least 60 (a page's reconnect goes on for 40 s)",
    )
    return problems


def comma_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting's items, stripped, empty ones dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())

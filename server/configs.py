"""The one `Settings` object, translated into each engine's and agent's own config.

The engines and agents take small frozen configs of their own (so they can be
used and tested without the server); this module is the only place that
knows which setting feeds which field.
"""

from __future__ import annotations

from typing import Optional

from earshot.agents.assist_agent import AssistConfig
from earshot.agents.interview_config import InterviewConfig
from earshot.agents.pace import PaceConfig
from earshot.agents.topic import TopicConfig
from earshot.models.asr import AsrConfig
from earshot.models.llm import LlmConfig
from earshot.models.redaction.kinds import parse_kinds
from earshot.models.streaming import StreamingConfig
from earshot.models.file_asr import FileAsrConfig
from earshot.models.turn_model import EndOfTurnConfig
from earshot.models.vad import VadConfig
from earshot.server.endpointing import EndpointingConfig
from earshot.server.settings import Settings


def asr_config(settings: Settings) -> AsrConfig:
    return AsrConfig(
        model=settings.asr_model,
        device=settings.asr_device,
        compute_type=settings.asr_compute_type,
        threads=settings.asr_threads,
        workers=settings.asr_workers,
        language=settings.asr_language,
        beam_size=settings.asr_beam_size,
        beam_max_s=settings.asr_beam_max_s,
        no_speech_threshold=settings.asr_no_speech_threshold,
        log_prob_threshold=settings.asr_log_prob_threshold,
        compression_ratio_threshold=settings.asr_compression_ratio_threshold,
        trim_window=settings.asr_trim_window,
        scheduling=settings.asr_scheduling,
        max_batch=settings.asr_max_batch,
        speech_check_ms=settings.min_speech_ms,
        cache_dir=settings.data_dir,
    )


def file_asr_config(settings: Settings) -> FileAsrConfig:
    """The whole-file Whisper that re-scores recorded calls (server/rescoring.py): the live ASR's device and
    decoding settings, with its own model."""
    return FileAsrConfig(
        model=settings.rescore_asr_model,
        device=settings.asr_device,
        compute_type=settings.asr_compute_type,
        threads=settings.asr_threads,
        language=settings.asr_language,
        beam_size=settings.asr_beam_size,
        cache_dir=settings.data_dir,
    )


def vad_config(settings: Settings, endpointing: Optional[EndpointingConfig] = None) -> VadConfig:
    endpointing = endpointing or endpointing_config(settings)
    return VadConfig(
        aggressiveness=settings.vad_aggressiveness,
        frame_ms=settings.vad_frame_ms,
        speech_start_ms=settings.speech_start_ms,
        pre_roll_ms=settings.pre_roll_ms,
        end_of_speech_ms=endpointing.vad_end_of_speech_ms,
        max_utterance_s=settings.max_utterance_s,
        noise_gate_db=settings.vad_noise_gate_db,
    )


def endpointing_config(settings: Settings, hold_unfinished_turns: bool = True) -> EndpointingConfig:
    """`hold_unfinished_turns=False` (assist calls): the model may end an utterance sooner, never later than the silence rule."""
    return EndpointingConfig(
        mode=settings.endpointing,
        end_of_speech_ms=settings.end_of_speech_ms,
        checks_ms=settings.end_of_turn_checks,
        threshold=settings.end_of_turn_threshold,
        fallback_ms=settings.end_of_turn_fallback_ms if hold_unfinished_turns else settings.end_of_speech_ms,
        min_speech_ms=settings.end_of_turn_min_speech_ms,
        timeout_s=settings.end_of_turn_timeout_ms / 1000,
        check_words=settings.end_of_turn_check_words,
        hold_numbers=not hold_unfinished_turns,  # no turn to take: a number read in groups stays one final
    )


def end_of_turn_config(settings: Settings) -> EndOfTurnConfig:
    return EndOfTurnConfig(
        model_path=settings.end_of_turn_model,
        threads=settings.end_of_turn_threads,
    )


def streaming_config(settings: Settings) -> StreamingConfig:
    return StreamingConfig(
        partial_interval_s=settings.partial_interval_ms / 1000,
        min_speech_ms=settings.min_speech_ms,
    )


def pace_config(settings: Settings) -> PaceConfig:
    return PaceConfig(
        min_wps=settings.pace_min_wps,
        max_wps=settings.pace_max_wps,
        window_s=settings.pace_window_s,
        long_pause_s=settings.long_pause_s,
    )


def llm_config(settings: Settings) -> LlmConfig:
    return LlmConfig(
        backend=settings.llm_backend,
        model=settings.llm_model,
        url=settings.llm_url,
        api_key=settings.llm_api_key.reveal(),
        threads=settings.llm_threads,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        timeout_s=settings.llm_timeout_s,
    )


def interview_config(settings: Settings) -> InterviewConfig:
    return InterviewConfig(
        turn_pause_s=settings.turn_pause_ms / 1000,
        reply_gap_s=settings.reply_gap_ms / 1000,
        short_turn_wait_s=max(0, settings.end_of_turn_fallback_ms - settings.end_of_speech_ms) / 1000,
        answer_timeout_s=settings.answer_timeout_s,
        max_minutes=settings.interview_max_minutes,
        max_follow_ups=settings.max_follow_ups,
        barge_in=settings.barge_in,
        llm_max_tokens=settings.llm_max_tokens,
    )


def assist_config(settings: Settings) -> AssistConfig:
    return AssistConfig(long_silence_s=settings.long_silence_s, suggestion_floor=settings.assist_suggestion_floor)


def topic_config(settings: Settings) -> TopicConfig:
    return TopicConfig(floor=settings.assist_topic_floor)


def redacted_kinds(settings: Settings, mode: str) -> frozenset[str]:
    """What a call mode's transcripts lose before they are stored, logged or sent to an LLM (models/redaction/kinds.py)."""
    setting = {
        "interview": settings.redact_interview,
        "assist": settings.redact_assist,
        "transcribe": settings.redact_transcribe,
    }[mode]
    return parse_kinds(setting)

"""The library internals Earshot relies on are where it expects them.

Earshot reaches past the public API of a few libraries, each for a measured
reason (see the comment where it is used). pyproject.toml bounds their
versions; when a new release moves one of these, this test names what moved
and where Earshot uses it, before a call quietly gets slower or breaks.
"""

from __future__ import annotations

import inspect

import pytest


def test_aiortc_audio_jitter_buffer_can_be_swapped():
    """server/webrtc.py: the caller's audio without aiortc's 80 ms playout prefetch."""
    from aiortc import RTCRtpReceiver
    from aiortc.jitterbuffer import JitterBuffer

    from earshot.server.webrtc import JITTER_BUFFER_ATTRIBUTE

    assert "prefetch" in inspect.signature(JitterBuffer).parameters, "JitterBuffer(prefetch=...) is gone"
    receiver = RTCRtpReceiver("audio", transport=_FakeDtls())
    buffer = getattr(receiver, JITTER_BUFFER_ATTRIBUTE, None)
    assert isinstance(buffer, JitterBuffer), f"aiortc no longer keeps its audio jitter buffer in {JITTER_BUFFER_ATTRIBUTE}"
    assert hasattr(buffer, "capacity")


def test_aioice_host_addresses_can_be_limited_to_loopback():
    """server/ice.py: tests and one-box demos offer only 127.0.0.1 candidates."""
    import aioice.ice

    assert callable(getattr(aioice.ice, "get_host_addresses", None)), "aioice.ice.get_host_addresses is gone"
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == ["use_ipv4", "use_ipv6"]


def test_aiortc_can_gather_relay_candidates_only():
    """loadtest/caller.py (relay_only) via server/ice.py: a headless caller forced through TURN, as a
    browser's iceTransportPolicy "relay"; aiortc passes it to aioice's Connection(transport_policy=...)."""
    import aioice.ice
    from aiortc import RTCConfiguration
    from aiortc.rtcconfiguration import RTCIceTransportPolicy
    from aiortc.rtcicetransport import ICE_TRANSPORT_POLICIES

    assert "iceTransportPolicy" in inspect.signature(RTCConfiguration).parameters, "RTCConfiguration(iceTransportPolicy=...) is gone"
    assert ICE_TRANSPORT_POLICIES[RTCIceTransportPolicy.RELAY] == aioice.ice.TransportPolicy.RELAY
    assert "transport_policy" in inspect.signature(aioice.ice.Connection).parameters


def test_faster_whisper_parts_the_engine_calls_directly():
    """models/asr.py: a window cut to the utterance, run through faster-whisper's own model parts."""
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens
    from faster_whisper.vad import get_vad_model

    for name in ("encode", "find_alignment"):
        assert callable(getattr(WhisperModel, name, None)), f"WhisperModel.{name} is gone"
    assert "num_frames" in inspect.signature(WhisperModel.find_alignment).parameters
    assert {"tokenizer", "text_tokens", "encoder_output"} <= set(inspect.signature(WhisperModel.find_alignment).parameters)
    for function in (pad_or_trim, get_compression_ratio, get_suppressed_tokens, get_vad_model):
        assert callable(function)
    assert {"no_timestamps", "sot_sequence", "eot"} <= {n for n, _ in inspect.getmembers(Tokenizer)}


@pytest.fixture(scope="module")
def whisper():
    from earshot.models.asr import AsrConfig, AsrEngine

    engine = AsrEngine.load(AsrConfig(workers=1))
    yield engine
    engine.close()


def test_the_loaded_whisper_model_has_generate_and_feature_extractor(whisper):
    model = whisper._model
    assert callable(getattr(model.model, "generate", None)), "ctranslate2 Whisper.generate is gone"
    assert callable(getattr(model, "feature_extractor", None))
    assert model.feature_extractor.nb_max_frames == 3000, "Whisper's 30 s window is no longer 3000 mel frames"
    assert hasattr(model, "hf_tokenizer") and hasattr(model, "max_length")


class _FakeDtls:
    """Enough of an RTCDtlsTransport for RTCRtpReceiver's constructor."""

    state = "new"

    def _register_rtp_receiver(self, *args, **kwargs) -> None:  # pragma: no cover - aiortc may call it later
        pass

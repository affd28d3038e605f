"""What an SDP offer must hold before aiortc sees it."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from earshot.server.errors import ApiError
from earshot.server.protocol import EVENTS_CHANNEL


def check_offer_sdp(sdp: str) -> SessionDescription:
    """400 for an offer we can tell is unusable before aiortc sees it; else the parsed offer."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:
        raise ApiError(400, "bad_sdp", "the offer is not valid SDP") from None
    kinds = [media.kind for media in parsed.media]
    if not kinds:
        raise ApiError(400, "bad_sdp", "the offer has no media sections")
    if "audio" not in kinds:
        raise ApiError(400, "no_audio", "the offer has no audio track; add the microphone before creating it")
    if "application" not in kinds:
        raise ApiError(
            400, "no_data_channel", f"the offer has no data channel; create one named '{EVENTS_CHANNEL}' before the offer"
        )
    return parsed

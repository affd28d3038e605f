"""What an SDP offer must hold before aiortc sees it."""

from __future__ import annotations

import re

from aiortc.sdp import SessionDescription

from earshot.server.errors import ApiError
from earshot.server.protocol import EVENTS_CHANNEL

MAX_MEDIA_SECTIONS = 8  # a call has at most 2 audio tracks (assist) and 1 data channel
# What aiortc can decode: an audio section must offer at least one of these.
AUDIO_CODECS = ("opus", "PCMU", "PCMA")
FINGERPRINT = re.compile(r"a=fingerprint:sha-256 ([0-9a-f]{2}:){31}[0-9a-f]{2}", re.IGNORECASE)
MAX_MID_CHARS = 32  # browsers send "0", "1", ... or a short token


def check_offer_sdp(sdp: str) -> SessionDescription:
    """400 for an offer we can tell is unusable before aiortc sees it; else the parsed offer."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:
        raise ApiError(400, "bad_sdp", "the offer is not valid SDP") from None
    kinds = [media.kind for media in parsed.media]
    if not kinds:
        raise ApiError(400, "bad_sdp", "the offer has no media sections")
    if len(kinds) > MAX_MEDIA_SECTIONS:
        raise ApiError(400, "too_many_media", f"the offer has {len(kinds)} media sections; at most {MAX_MEDIA_SECTIONS}")
    # Without these, aiortc half sets up a connection it then fails to close.
    mids = [media.rtp.muxId for media in parsed.media]
    if not all(mids) or len(set(mids)) != len(mids) or any(len(mid) > MAX_MID_CHARS for mid in mids):
        raise ApiError(400, "bad_sdp", f"each media section of the offer needs a short a=mid of its own (at most {MAX_MID_CHARS} characters)")
    if any(media.port == 0 for media in parsed.media):
        raise ApiError(400, "bad_sdp", "the offer disables a media section (port 0); offer only the tracks you send")
    if any(media.sctp_port is not None and not 0 < media.sctp_port < 65536 for media in parsed.media):
        raise ApiError(400, "bad_sdp", "the offer's a=sctp-port is not a port")
    if any(item not in mids for group in parsed.group for item in group.items):
        raise ApiError(400, "bad_sdp", "the offer's a=group names a media section it does not have")
    if "audio" not in kinds:
        raise ApiError(400, "no_audio", "the offer has no audio track; add the microphone before creating it")
    if "application" not in kinds:
        raise ApiError(
            400, "no_data_channel", f"the offer has no data channel; create one named '{EVENTS_CHANNEL}' before the offer"
        )
    if not _fingerprinted(sdp):
        raise ApiError(400, "no_fingerprint", "the offer has no well-formed DTLS fingerprint (a=fingerprint:sha-256 and 32 hex bytes) for its media")
    wanted = {codec.lower() for codec in AUDIO_CODECS}
    for media in parsed.media:
        offered = {codec.mimeType.partition("/")[2].lower() for codec in media.rtp.codecs}
        if media.kind == "audio" and not offered & wanted:
            raise ApiError(
                400, "bad_codec", f"cannot negotiate this offer's audio: offer one of {', '.join(AUDIO_CODECS)}"
            )
    return parsed


def _fingerprinted(sdp: str) -> bool:
    """A well-formed sha-256 DTLS fingerprint (32 hex bytes) at session level, or in every media section."""
    session, *sections = sdp.replace("\r\n", "\n").split("\nm=")

    def has_one(block: str) -> bool:
        return any(FINGERPRINT.fullmatch(line.strip()) for line in block.split("\n"))

    return has_one(session) or all(has_one(section) for section in sections)

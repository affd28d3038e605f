"""Which inbound track is whom, in a mode with labelled tracks (an assist call: agent, customer).

The offer may carry `"tracks": {"<track id>": "agent" | "customer"}`, the ids
being the browser's MediaStreamTrack ids (the `a=msid` lines of the SDP).
Without it, the audio sections are taken in the mode's order: agent, then customer.
The result is keyed by the SDP `mid`, which every audio section has, so a
track sent without an msid still finds its speaker.
"""

from __future__ import annotations

from typing import Any

from aiortc.sdp import SessionDescription


class SpeakerError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def assign_speakers(offer: SessionDescription, tracks: Any, speakers: tuple[str, ...]) -> dict[str, str]:
    """mid -> speaker (one of `speakers`) for the offer's audio sections; SpeakerError says what is wrong."""
    audio = [(media.rtp.muxId, _track_id(media.msid)) for media in offer.media if media.kind == "audio"]
    if len(audio) > len(speakers):
        raise SpeakerError("too_many_tracks", f"this call takes at most {len(speakers)} audio tracks, got {len(audio)}")
    if tracks is None:
        return {mid: speaker for (mid, _), speaker in zip(audio, speakers)}
    if not isinstance(tracks, dict) or not tracks or not all(isinstance(k, str) and isinstance(v, str) for k, v in tracks.items()):
        raise SpeakerError("bad_tracks", 'tracks must be an object of track id -> speaker, e.g. {"<id>": "customer"}')
    unknown = sorted({label for label in tracks.values() if label not in speakers})
    if unknown:
        raise SpeakerError("bad_track_label", f"unknown track label {', '.join(map(repr, unknown))}; use {' or '.join(speakers)}")
    if len(set(tracks.values())) != len(tracks):
        raise SpeakerError("bad_track_label", "each speaker label may name one track only")
    mid_of = {track_id: mid for mid, track_id in audio if track_id}
    missing = sorted(track_id for track_id in tracks if track_id not in mid_of)
    if missing:
        raise SpeakerError("unknown_track", f"the offer has no audio track with id {', '.join(missing)}")
    return {mid_of[track_id]: speaker for track_id, speaker in tracks.items()}


def _track_id(msid: str | None) -> str | None:
    # "a=msid:<stream id> <track id>"; the stream id may be "-" (no stream).
    bits = (msid or "").split()
    return bits[1] if len(bits) == 2 else None

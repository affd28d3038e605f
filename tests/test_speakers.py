"""Labelling the tracks of an assist call, with real aiortc offers."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack
from aiortc.sdp import SessionDescription

from earshot.server.protocol import EVENTS_CHANNEL, SPEAKERS
from earshot.server.speakers import SpeakerError, assign_speakers


async def offer_with(tracks: int) -> tuple[SessionDescription, list[str]]:
    pc = RTCPeerConnection()
    sent = [AudioStreamTrack() for _ in range(tracks)]
    for track in sent:
        pc.addTrack(track)
    pc.createDataChannel(EVENTS_CHANNEL)
    await pc.setLocalDescription(await pc.createOffer())
    parsed = SessionDescription.parse(pc.localDescription.sdp)
    await pc.close()
    return parsed, [track.id for track in sent]


@pytest.mark.asyncio
async def test_labels_follow_the_track_ids_and_default_to_offer_order():
    offer, (first, second) = await offer_with(2)
    mids = [m.rtp.muxId for m in offer.media if m.kind == "audio"]
    assert assign_speakers(offer, {first: "customer", second: "agent"}, SPEAKERS) == {mids[0]: "customer", mids[1]: "agent"}
    assert assign_speakers(offer, None, SPEAKERS) == {mids[0]: "agent", mids[1]: "customer"}
    assert assign_speakers(offer, {second: "customer"}, SPEAKERS) == {mids[1]: "customer"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "tracks, code",
    [
        ({"FIRST": "caller"}, "bad_track_label"),
        ({"FIRST": "agent", "SECOND": "agent"}, "bad_track_label"),
        ({"no-such-track": "agent"}, "unknown_track"),
        (["agent"], "bad_tracks"),
        ({}, "bad_tracks"),
    ],
)
async def test_bad_labels_are_refused_with_a_code(tracks, code):
    offer, (first, second) = await offer_with(2)
    if isinstance(tracks, dict):
        tracks = {{"FIRST": first, "SECOND": second}.get(k, k): v for k, v in tracks.items()}
    with pytest.raises(SpeakerError) as caught:
        assign_speakers(offer, tracks, SPEAKERS)
    assert caught.value.code == code
    if code == "bad_track_label" and "caller" in str(tracks):
        assert "'caller'" in str(caught.value) and "agent or customer" in str(caught.value)


@pytest.mark.asyncio
async def test_more_than_two_tracks_is_refused():
    offer, _ = await offer_with(3)
    with pytest.raises(SpeakerError) as caught:
        assign_speakers(offer, None, SPEAKERS)
    assert caught.value.code == "too_many_tracks"

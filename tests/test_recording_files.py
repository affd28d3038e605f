"""Call recordings on disk: sealed pieces, the recorder's thread, reading back, erasure, retention, key rotation.

Real parts: real speech from the corpus, PyAV's FLAC and Opus encoders, AES-GCM
with storage keys from a real key file. The whole call through a server is
tests/test_recording.py.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import av
import pytest

from earshot.models.audio import SAMPLE_RATE, read_audio
from earshot.server.at_rest import Sealer
from earshot.server.recording import CallRecording
from earshot.server.recording_files import (
    MAGIC,
    PIECE_BYTES,
    NotRecorded,
    RecordingUnreadable,
    erase_recording,
    open_part,
    parts,
    reseal_part,
    reseal_recordings,
    sweep_expired,
)
from earshot.server.settings import Settings
from earshot.server.storage_keys import add_key
from tests.conftest import corpus_file

SESSION = "0123456789abcdef"
CLIP = "utterances/LJ001-0002.wav"  # 1.9 s of real speech


def speech() -> bytes:
    return read_audio(corpus_file(CLIP))


def settings(tmp_path: Path, **values) -> Settings:
    return Settings(data_dir=tmp_path / "data", recording=True, **values)


def record(
    s: Settings, pcm: bytes, speakers=("agent", "customer"), offset_s: float = 0.0, session=SESSION, chunk: int = 640,
    paced: bool = True,
) -> dict:
    """What a call does: the tracks' PCM pushed in chunks (20 ms: a frame), then finish()."""
    async def run() -> dict:
        call = CallRecording(Sealer.from_settings(s), s, session, "assist", time.time(), list(speakers), offset_s)
        for start in range(0, len(pcm), chunk):
            for recorder in call.recorders.values():
                recorder.push(pcm[start : start + chunk])
            if paced:
                await asyncio.sleep(0)
        return await call.finish()

    return asyncio.run(run())


@pytest.mark.parametrize("fmt", ["flac", "opus"])
def test_each_track_is_sealed_and_decrypts_to_its_audio(tmp_path, fmt):
    s = settings(tmp_path, recording_format=fmt)
    pcm = speech()
    info = record(s, pcm)
    seconds = len(pcm) / 2 / SAMPLE_RATE
    assert info["format"] == fmt and set(info["tracks"]) == {"agent", "customer"}
    assert info["tracks"]["agent"]["duration_s"] == pytest.approx(seconds, abs=0.001)
    assert info["tracks"]["agent"]["dropped_s"] == 0
    found = parts(s, SESSION)
    assert [p.track for p in found] == ["agent", "customer"] and all(p.format == fmt for p in found)
    sealer = Sealer.from_settings(s)
    for part in found:
        raw = part.path.read_bytes()
        assert raw.startswith(MAGIC)
        with pytest.raises(av.error.FFmpegError):  # not audio without the key
            av.open(io.BytesIO(raw))
        decoded = read_audio(io.BytesIO(open_part(sealer, SESSION, part.path)))
        # FLAC is lossless; Opus gives the same length give or take its pre-skip/padding.
        if fmt == "flac":
            assert decoded == pcm
        else:
            assert abs(len(decoded) - len(pcm)) / 2 / SAMPLE_RATE < 0.03


def test_a_long_part_is_cut_into_pieces_that_only_open_in_place(tmp_path):
    s = settings(tmp_path)
    pcm = speech() * 40  # 76 s: several PIECE_BYTES of FLAC
    record(s, pcm, speakers=("",), chunk=SAMPLE_RATE * 2)  # 1 s chunks: fewer than the queue holds
    (part,) = parts(s, SESSION)
    assert part.track == "caller" and part.path.stat().st_size > 2 * PIECE_BYTES
    sealer = Sealer.from_settings(s)
    assert read_audio(io.BytesIO(open_part(sealer, SESSION, part.path))) == pcm
    with pytest.raises(RecordingUnreadable):  # another session's key context
        open_part(sealer, "fedcba9876543210", part.path)
    raw = part.path.read_bytes()
    part.path.write_bytes(raw[: len(raw) - 100])  # cut short
    with pytest.raises(RecordingUnreadable):
        open_part(sealer, SESSION, part.path)
    flipped = bytearray(raw)
    flipped[len(MAGIC) + 40] ^= 1
    part.path.write_bytes(bytes(flipped))
    with pytest.raises(RecordingUnreadable):
        open_part(sealer, SESSION, part.path)


def test_a_recorder_that_falls_behind_drops_audio_and_never_blocks(tmp_path):
    s = settings(tmp_path)
    pcm = speech() * 10  # 950 frames pushed at once (well under a millisecond): more than the queue's 500
    info = record(s, pcm, speakers=("",), paced=False)
    track = info["tracks"]["caller"]
    assert track["dropped_s"] > 0, track
    assert track["duration_s"] + track["dropped_s"] == pytest.approx(len(pcm) / 2 / SAMPLE_RATE, abs=0.001)
    (part,) = parts(s, SESSION)
    decoded = read_audio(io.BytesIO(open_part(Sealer.from_settings(s), SESSION, part.path)))
    assert len(decoded) / 2 / SAMPLE_RATE == pytest.approx(track["duration_s"], abs=0.001)


def test_a_resumed_call_adds_a_part_and_the_info_sums(tmp_path):
    s = settings(tmp_path)
    pcm = speech()
    first = record(s, pcm, speakers=("",))
    second = asyncio.run(_resume(s, pcm, first))
    assert second["tracks"]["caller"]["parts"] == 2
    assert second["tracks"]["caller"]["duration_s"] == pytest.approx(2 * len(pcm) / 2 / SAMPLE_RATE, abs=0.002)
    assert [p.offset_s for p in parts(s, SESSION)] == [0.0, 4.5]


async def _resume(s: Settings, pcm: bytes, earlier: dict) -> dict:
    call = CallRecording(Sealer.from_settings(s), s, SESSION, "interview", time.time(), [""], 4.5, earlier)
    call.recorders[""].push(pcm)
    return await call.finish()


def test_erasure_and_retention_delete_recordings(tmp_path):
    s = settings(tmp_path, retention_recordings_s=3600)
    pcm = speech()
    record(s, pcm, session=SESSION)
    record(s, pcm, session="fedcba9876543210")
    assert erase_recording(s, SESSION) and not erase_recording(s, SESSION)
    with pytest.raises(NotRecorded):
        parts(s, SESSION)
    assert sweep_expired(s) == []  # created just now
    assert sweep_expired(s, now=time.time() + 3601) == ["fedcba9876543210"]
    with pytest.raises(NotRecorded):
        parts(s, "fedcba9876543210")


def test_key_rotation_reseals_a_part_under_the_new_key(tmp_path):
    s = settings(tmp_path)
    pcm = speech()
    record(s, pcm, speakers=("",))
    (part,) = parts(s, SESSION)
    old = Sealer.from_settings(s)
    add_key(tmp_path / "data" / "keys" / "storage.keys")
    new = Sealer.from_settings(s)
    assert new.current_key_id != old.current_key_id
    assert reseal_part(new, SESSION, part.path) and not reseal_part(new, SESSION, part.path)
    assert read_audio(io.BytesIO(open_part(new, SESSION, part.path))) == pcm
    with pytest.raises(RecordingUnreadable):  # the old key alone no longer opens it
        open_part(Sealer([k for k in _keys(s) if k.id == old.current_key_id]), SESSION, part.path)


def _keys(s: Settings):
    from earshot.server.storage_keys import KeySource

    return KeySource.from_settings(s).load(create=False)


def test_rotate_keys_reseals_every_recording_and_counts_what_does_not_open(tmp_path):
    s = settings(tmp_path)
    record(s, speech())  # two parts
    add_key(tmp_path / "data" / "keys" / "storage.keys")
    sealer = Sealer.from_settings(s)
    done = reseal_recordings(s, sealer)
    assert (done.resealed, done.current, done.unreadable) == (2, 0, 0)
    first = parts(s, SESSION)[0].path
    first.write_bytes(first.read_bytes()[:-10])  # cut short (or still being written)
    done = reseal_recordings(s, sealer)
    assert (done.resealed, done.current, done.unreadable) == (0, 1, 1)


def test_a_call_that_got_no_audio_leaves_no_part(tmp_path):
    s = settings(tmp_path)
    assert record(s, b"", speakers=("agent", "customer")) == {}
    with pytest.raises(NotRecorded):
        parts(s, SESSION)

"""Where call recordings live on disk, sealed, and how they are read back, erased and expired.

    <recording_dir>/<session id>/recording.json                  what the session is (no speech): mode,
                                                                 created_at, format
    <recording_dir>/<session id>/<track>.<offset ms>.<fmt>.sealed  one part of a track: the audio of one
                                                                 call of the session from <offset ms> on

A track is `agent` or `customer` in an assist call, `caller` in a single-speaker
call; a reconnect that resumes the session adds a part at its audio clock.

A part is the encoded audio (FLAC or Ogg Opus) cut into pieces of up to
PIECE_BYTES, each sealed with the storage keys (server/at_rest.py
`seal_bytes`), so a file being written holds at most one piece in memory:

    MAGIC, then per piece: 4-byte big-endian length | sealed piece

Each piece's associated data names the file and the piece's place in it, and
the last piece is marked: a piece moved, dropped or a file cut short does not
open (RecordingUnreadable).

Retention: `sweep_expired` deletes every recording older than
`retention_recordings_s` (counted from the session's creation, as every other
retention); erasure (`erase_recording`) deletes a session's at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from earshot.server.at_rest import Sealer, SealError, sealed_bytes_key_id
from earshot.server.settings import Settings
from earshot.server.store import is_session_id

MAGIC = b"EARSHOT-REC1\n"
PIECE_BYTES = 64 * 1024  # ~16 s of 16 kHz speech in FLAC, ~40 s in Opus
LENGTH = struct.Struct(">I")
MANIFEST = "recording.json"
FORMATS = {"flac": "flac", "opus": "opus"}  # setting -> file extension
PART = re.compile(r"(?P<track>[a-z]+)\.(?P<offset>[0-9]{1,12})\.(?P<format>flac|opus)\.sealed")


class RecordingError(Exception):
    """A recording that cannot be used."""


class NotRecorded(RecordingError):
    """The session has no recording: recording was off, or it was erased or expired."""


class RecordingUnreadable(RecordingError):
    """A recording that does not decrypt (key missing, altered, cut short) or does not decode."""


def recording_root(settings: Settings) -> Path:
    return Path(settings.recording_dir).expanduser() if settings.recording_dir else settings.data_dir / "recordings"


def session_dir(settings: Settings, session_id: str) -> Path:
    if not is_session_id(session_id):
        raise NotRecorded(f"{session_id!r} is not a session id")
    return recording_root(settings) / session_id


def part_name(track: str, offset_s: float, fmt: str) -> str:
    return f"{track}.{round(offset_s * 1000):09d}.{FORMATS[fmt]}.sealed"


@dataclass(frozen=True)
class Part:
    path: Path
    track: str
    offset_s: float
    format: str


@dataclass(frozen=True)
class Manifest:
    session_id: str
    mode: str
    created_at: float
    format: str


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Once per session (a resumed call finds it there): nothing said is in it."""
    path = directory / MANIFEST
    if path.exists():
        return
    staging = directory / f".{MANIFEST}.{os.getpid()}"
    staging.write_text(json.dumps(manifest.__dict__))
    staging.replace(path)


def read_manifest(directory: Path) -> Optional[Manifest]:
    try:
        return Manifest(**json.loads((directory / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def parts(settings: Settings, session_id: str) -> list[Part]:
    """The session's parts, by track then offset; NotRecorded when there are none."""
    directory = session_dir(settings, session_id)
    found = []
    for path in sorted(directory.glob("*.sealed")) if directory.is_dir() else []:
        named = PART.fullmatch(path.name)
        if named:
            found.append(Part(path, named["track"], int(named["offset"]) / 1000, named["format"]))
    if not found:
        raise NotRecorded(f"session {session_id} has no recording (recording was off, or it was erased or expired)")
    return sorted(found, key=lambda p: (p.track, p.offset_s))


class SealedWriter:
    """One part being written: encoded bytes in, sealed pieces out to the file. Not thread-safe: one thread."""

    def __init__(self, sealer: Sealer, session_id: str, path: Path, name: str = "") -> None:
        self._sealer = sealer
        self._session_id = session_id
        self._name = name or path.name  # what the pieces are bound to: the part's final name
        self._file: BinaryIO = open(path, "xb")
        self._file.write(MAGIC)
        self._buffer = bytearray()
        self._index = 0
        self.sealed_bytes = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= PIECE_BYTES:
            self._piece(bytes(self._buffer[:PIECE_BYTES]), last=False)
            del self._buffer[:PIECE_BYTES]
        return len(data)

    def close(self) -> None:
        self._piece(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._file.close()

    def _piece(self, data: bytes, last: bool) -> None:
        sealed = self._sealer.seal_bytes(self._session_id, data, _context(self._name, self._index, last))
        self._file.write(LENGTH.pack(len(sealed)) + sealed)
        self._file.flush()
        self._index += 1
        self.sealed_bytes += len(sealed)


def _context(name: str, index: int, last: bool) -> str:
    return f"{name}#{index}{'$' if last else ''}"


def _pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise RecordingUnreadable(f"{path.name}: not a sealed recording")
        while True:
            head = f.read(LENGTH.size)
            if not head:
                return
            (size,) = LENGTH.unpack(head) if len(head) == LENGTH.size else (-1,)
            piece = f.read(size) if size > 0 else b""
            if size <= 0 or len(piece) != size:
                raise RecordingUnreadable(f"{path.name}: cut short")
            yield piece


def open_part(sealer: Sealer, session_id: str, path: Path) -> bytes:
    """A part's encoded audio, decrypted; RecordingUnreadable when it does not open whole."""
    out = bytearray()
    pieces = list(_pieces(path)) if path.is_file() else None
    if not pieces:
        raise RecordingUnreadable(f"{path.name}: missing or empty")
    try:
        for index, piece in enumerate(pieces):
            out += sealer.unseal_bytes(session_id, piece, _context(path.name, index, index == len(pieces) - 1))
    except SealError as exc:
        raise RecordingUnreadable(f"{path.name}: {exc} (or the file was cut short)") from None
    return bytes(out)


def reseal_part(sealer: Sealer, session_id: str, path: Path) -> bool:
    """The part sealed again with the current key (key rotation); False when it already is."""
    if all(sealed_bytes_key_id(piece) == sealer.current_key_id for piece in _pieces(path)):
        return False
    data = open_part(sealer, session_id, path)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    writer = SealedWriter(sealer, session_id, staging, name=path.name)
    writer.write(data)
    writer.close()
    staging.replace(path)
    return True


@dataclass
class ResealedParts:
    resealed: int = 0
    current: int = 0
    unreadable: int = 0  # left as they are: a key is missing, or a part is altered or still being written


def reseal_recordings(settings: Settings, sealer: Sealer) -> ResealedParts:
    """Every recording's parts sealed with the current key (`earshot rotate-keys`)."""
    done = ResealedParts()
    for session_id in recorded_sessions(settings):
        for path in sorted((recording_root(settings) / session_id).glob("*.sealed")):
            try:
                if reseal_part(sealer, session_id, path):
                    done.resealed += 1
                else:
                    done.current += 1
            except (RecordingUnreadable, OSError):
                done.unreadable += 1
    return done


def recorded_sessions(settings: Settings) -> list[str]:
    root = recording_root(settings)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_session_id(p.name)) if root.is_dir() else []


def erase_recording(settings: Settings, session_id: str) -> bool:
    """Delete a session's recording (privacy erasure, purge); whether there was one."""
    if not is_session_id(session_id):
        return False
    directory = recording_root(settings) / session_id
    if not directory.exists():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def sweep_expired(settings: Settings, now: Optional[float] = None) -> list[str]:
    """Delete the recordings older than retention_recordings_s; the ids of the sessions whose went.

    Age counts from the session's creation (its manifest), or the folder's time when there is none."""
    now = time.time() if now is None else now
    removed = []
    for session_id in recorded_sessions(settings):
        directory = recording_root(settings) / session_id
        manifest = read_manifest(directory)
        try:
            created = manifest.created_at if manifest is not None else directory.stat().st_mtime
        except OSError:
            continue
        if now >= created + settings.retention_recordings_s and erase_recording(settings, session_id):
            removed.append(session_id)
    return removed

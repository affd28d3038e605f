"""Encryption at rest: what the store writes to Redis about what people said is sealed first.

A sealed value is a string

    es1:<key id>:<base64(nonce | ciphertext | tag)>

AES-256-GCM with a random 96-bit nonce, and the session id as associated
data: a value copied under another session's key does not open. The key id
says which storage key (server/storage_keys.py) opens it. A value without
the `es1:` prefix was stored before encryption existed and is read as it is;
`earshot rotate-keys` seals such values too.

Keys change while a server runs (`earshot rotate-keys` adds one to the key
file): a value sealed with a key id the server does not hold makes it look at
the key file again at once, and `seal` looks at most every `RECHECK_S`
(a stat; the file is read only when it changed), so a new key encrypts on
every server that shares the key file within a second. Keys once loaded are
never forgotten by a running process: a retired key still opens what a
server read before it was retired.

Audio (an opt-in call recording, server/recording_files.py) is sealed the same
way, as bytes: `seal_bytes` gives `es1:<key id>:` + nonce | ciphertext | tag
with no base64, and its associated data is the session id and a context (the
file and chunk a piece belongs to), so a chunk moved to another file or place
does not open.

Cost (measured: one core of the 2-core dev VM, cryptography 50.0): sealing
and unsealing a 375-byte final takes 7-9 us together, a 4 kB value (an
interview state, a report) 32-48 us: small beside a Redis round trip.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from typing import TYPE_CHECKING, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from earshot.server.storage_keys import KeySource, StorageKey, StorageKeyError

if TYPE_CHECKING:
    from earshot.server.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "es1:"
NONCE_BYTES = 12
TAG_BYTES = 16


class SealError(Exception):
    """A sealed value that does not open: unknown key, another session's value, or altered."""


def sealed_key_id(stored: str) -> Optional[str]:
    """The id of the key a stored value was sealed with; None for a value stored before encryption."""
    if not stored.startswith(PREFIX):
        return None
    return stored[len(PREFIX):].partition(":")[0]


def _bytes_aad(session_id: str, context: str) -> bytes:
    return f"{session_id}\0{context}".encode()


def sealed_bytes_key_id(stored: bytes) -> Optional[str]:
    """The id of the key `seal_bytes` sealed a piece with; None when it is not sealed data."""
    if not stored.startswith(PREFIX.encode()):
        return None
    head, sep, _ = stored[len(PREFIX):].partition(b":")
    return head.decode(errors="replace") if sep else None


class Sealer:
    RECHECK_S = 1.0

    def __init__(
        self, keys: list[StorageKey], source: Optional[KeySource] = None, stamp: Optional[tuple[int, int, int]] = None
    ) -> None:
        self._source = source  # where to look for new keys (None: the keys given are all there are)
        self._stamp = stamp  # the key file's stamp when `keys` were read from it
        self._checked_at = time.monotonic()
        self._ciphers: dict[str, AESGCM] = {}
        self._current = ""
        self._adopt(keys)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Sealer":
        """The keys the settings name (the key file is made on first start); StorageKeyError if unusable."""
        source = KeySource.from_settings(settings)
        stamp = source.stamp()  # before reading: a change during the read is seen at the next check
        return cls(source.load(), source, stamp)

    @property
    def current_key_id(self) -> str:
        return self._current

    def seal(self, session_id: str, plaintext: str) -> str:
        self._maybe_recheck()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, plaintext.encode(), session_id.encode())
        return f"{PREFIX}{self._current}:{base64.b64encode(nonce + sealed).decode()}"

    def unseal(self, session_id: str, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # stored before encryption existed
        key_id, _, body = stored[len(PREFIX):].partition(":")
        cipher = self._cipher(session_id, key_id)
        try:
            raw = base64.b64decode(body, validate=True)
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], session_id.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError(
                f"a stored value of session {session_id} sealed with key {key_id} does not open: "
                "it was altered, or it belongs to another session"
            ) from None

    def seal_bytes(self, session_id: str, data: bytes, context: str) -> bytes:
        """Bytes sealed like `seal`, bound to the session and to `context` (where the piece belongs)."""
        self._maybe_recheck()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, data, _bytes_aad(session_id, context))
        return f"{PREFIX}{self._current}:".encode() + nonce + sealed

    def unseal_bytes(self, session_id: str, stored: bytes, context: str) -> bytes:
        """What `seal_bytes` sealed; SealError when the key is missing or it was altered, moved or cut."""
        head, sep, body = stored[len(PREFIX):].partition(b":") if stored.startswith(PREFIX.encode()) else (b"", b"", b"")
        if not sep:
            raise SealError(f"a stored piece of session {session_id} ({context}) is not sealed data")
        cipher = self._cipher(session_id, head.decode(errors="replace"))
        try:
            if len(body) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], _bytes_aad(session_id, context))
        except (InvalidTag, ValueError):
            raise SealError(
                f"a stored piece of session {session_id} ({context}) does not open: it was altered, moved, "
                "or it belongs to another session"
            ) from None

    def _maybe_recheck(self) -> None:
        now = time.monotonic()
        if now - self._checked_at >= self.RECHECK_S:
            self._checked_at = now
            self._reload_if_changed()

    def _cipher(self, session_id: str, key_id: str) -> AESGCM:
        if key_id not in self._ciphers:
            self._reload_if_changed()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(
                f"a stored value of session {session_id} is sealed with key {key_id!r}, which is not among the "
                f"storage keys ({', '.join(self._ciphers)}): put that key back into the key file"
            )
        return cipher

    def reseal(self, session_id: str, stored: str) -> Optional[str]:
        """`stored` sealed with the current key; None when it already is."""
        if sealed_key_id(stored) == self._current:
            return None
        return self.seal(session_id, self.unseal(session_id, stored))

    def _adopt(self, keys: list[StorageKey]) -> None:
        for key in keys:
            self._ciphers.setdefault(key.id, AESGCM(key.secret))
        self._current = keys[-1].id

    def _reload_if_changed(self) -> None:
        if self._source is None:
            return
        stamp = self._source.stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            keys = self._source.load(create=False)
        except StorageKeyError as exc:
            log.error("storage keys not reloaded (the ones loaded before stay in use): %s", exc)
            return
        before = self._current
        self._adopt(keys)
        if self._current != before:
            log.info("storage keys reloaded from %s: key %s encrypts from now on", self._source.path, self._current)

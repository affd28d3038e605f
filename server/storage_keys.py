"""Storage keys: where they come from, the key file's format, and the rules it must follow.

A storage key is 32 random bytes (AES-256). Its id is the first 8 hex digits
of SHA-256 over a fixed label and the key: it names the key beside every
value sealed with it (server/at_rest.py) and in the key file, and never
reveals the key.

The key file holds one key a line, `KEY_ID BASE64KEY`; blank lines and lines
starting with `#` are comments. The last key encrypts, every key decrypts.
An id that does not match its key is an error, so a line damaged by an edit
is caught at start, not when a value fails to open.

Where the keys come from (settings `storage_key`, `storage_key_file`):

- `storage_key` set: it encrypts (and decrypts). The key file, if there is
  one, still supplies keys that decrypt: that is how an operator who keeps
  the key in the environment rotates it (README, "Encryption at rest").
- otherwise the key file (`storage_key_file`, default
  `data_dir/keys/storage.keys`): made on first start with one new key,
  mode 0600 in a 0700 folder, written atomically.

A key file that its group or others may read or write is refused, as ssh
refuses a private key file; the fix is in the message. No error message
holds key material: a bad line is named by its number.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from earshot.server.errors import StartupError

if TYPE_CHECKING:
    from earshot.server.settings import Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32
_ID_LABEL = b"earshot storage key id\x00"
FILE_HEADER = (
    "# Earshot storage keys (AES-256): KEY_ID BASE64KEY, one a line. The last key encrypts, every key decrypts.\n"
    "# Keep this file secret, mode 0600, and backed up: without its keys the stored sessions cannot be read.\n"
)


class StorageKeyError(StartupError):
    """A storage key or key file that cannot be used; the message never holds key material."""


def key_id(secret: bytes) -> str:
    return hashlib.sha256(_ID_LABEL + secret).hexdigest()[:8]


@dataclass(frozen=True)
class StorageKey:
    id: str
    secret: bytes = field(repr=False)

    @classmethod
    def new(cls) -> "StorageKey":
        secret = secrets.token_bytes(KEY_BYTES)
        return cls(key_id(secret), secret)

    @classmethod
    def from_base64(cls, text: str, where: str) -> "StorageKey":
        """A key from its base64 text; `where` names the source in an error (the text itself never appears)."""
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise StorageKeyError(f"{where}: the key is not valid base64") from None
        if len(secret) != KEY_BYTES:
            raise StorageKeyError(f"{where}: the key is {len(secret)} bytes, not {KEY_BYTES} (AES-256)")
        return cls(key_id(secret), secret)

    def line(self) -> str:
        return f"{self.id} {base64.b64encode(self.secret).decode()}"


def key_file_path(settings: "Settings") -> Path:
    return Path(settings.storage_key_file) if settings.storage_key_file else settings.data_dir / "keys" / "storage.keys"


def check_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StorageKeyError(
            f"storage key file {path} is open to its group or others (mode {mode:04o}): "
            f"it must be readable by its owner only; run `chmod 600 {path}`"
        )


def parse_key_file(path: Path, text: str) -> list[StorageKey]:
    """The keys of a key file's text, in order; StorageKeyError names the line of any problem."""
    keys: list[StorageKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 2:
            raise StorageKeyError(f"{where}: expected `KEY_ID BASE64KEY`, found {len(parts)} fields")
        key = StorageKey.from_base64(parts[1], where)
        if parts[0] != key.id:
            raise StorageKeyError(f"{where}: the key id does not match its key (a damaged line?); its key's id is {key.id}")
        if any(k.id == key.id for k in keys):
            raise StorageKeyError(f"{where}: key {key.id} is listed twice")
        keys.append(key)
    if not keys:
        raise StorageKeyError(f"storage key file {path} holds no key")
    return keys


def read_key_file(path: Path) -> list[StorageKey]:
    check_mode(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageKeyError(f"cannot read storage key file {path}: {exc.__class__.__name__}") from None
    return parse_key_file(path, text)


def write_key_file(path: Path, text: str, replace: bool = True) -> bool:
    """Write the whole file atomically (0600, fsynced); with replace=False an existing file is left as it is.

    Returns whether this call wrote the file (False: another process made it first).
    """
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # mkdir's mode passes through the umask
    temporary = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if it exists: two servers starting at once keep one key
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def key_file_lock(path: Path) -> Iterator[None]:
    """One change to the key file at a time (a lock on its folder, which a rename leaves in place)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_key_file(path: Path) -> list[StorageKey]:
    """A new key file with one new key (or the keys of the one another process made meanwhile)."""
    key = StorageKey.new()
    if write_key_file(path, FILE_HEADER + key.line() + "\n", replace=False):
        log.info("made a new storage key file %s (mode 0600): back it up; without it stored sessions cannot be read", path)
        return [key]
    return read_key_file(path)


def add_key(path: Path) -> StorageKey:
    """Append a new key to the key file (made if absent): it encrypts from now on. Comments are kept."""
    if not path.exists():
        return create_key_file(path)[-1]
    with key_file_lock(path):
        check_mode(path)
        text = path.read_text(encoding="utf-8")
        parse_key_file(path, text)
        key = StorageKey.new()
        write_key_file(path, text + ("" if text.endswith("\n") or not text else "\n") + key.line() + "\n")
    return key


def retire_keys(path: Path, keep: str) -> list[str]:
    """Drop every key but `keep` from the key file; returns the ids dropped. Comments are kept."""
    with key_file_lock(path):
        check_mode(path)
        text = path.read_text(encoding="utf-8")
        ids = [key.id for key in parse_key_file(path, text)]
        if keep not in ids:
            raise StorageKeyError(f"storage key file {path} does not hold key {keep}")
        kept = [
            line for line in text.splitlines()
            if not line.strip() or line.lstrip().startswith("#") or line.split()[0] == keep
        ]
        write_key_file(path, "\n".join(kept) + "\n")
    return [key_id for key_id in ids if key_id != keep]


@dataclass(frozen=True)
class KeySource:
    """Where a process's storage keys come from, per its settings; `load()` gives them, oldest first."""

    path: Path  # the key file
    named: bool  # storage_key_file was set (else the default path under data_dir)
    settings_key: Optional[StorageKey] = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "KeySource":
        configured = settings.storage_key.reveal()
        settings_key = StorageKey.from_base64(configured, "storage_key") if configured else None
        return cls(key_file_path(settings), bool(settings.storage_key_file), settings_key)

    def load(self, create: bool = True) -> list[StorageKey]:
        """The keys, the encrypting one last; with neither a key in settings nor a key file, the file is made."""
        if self.settings_key is None:
            if self.path.exists():
                return read_key_file(self.path)
            if not create:
                raise StorageKeyError(f"storage key file {self.path} is gone")
            return create_key_file(self.path)
        if not self.path.exists():
            if self.named:
                raise StorageKeyError(f"storage_key_file {self.path} does not exist")
            return [self.settings_key]
        older = [key for key in read_key_file(self.path) if key.id != self.settings_key.id]
        return [*older, self.settings_key]

    def stamp(self) -> Optional[tuple[int, int, int]]:
        """What changes when the key file is replaced or edited (None: no file)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

"""Sealing values for Redis, the storage key file, and the private Redis's file modes."""

from __future__ import annotations

import base64
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from earshot.server.at_rest import PREFIX, Sealer, SealError, sealed_key_id
from earshot.server.redis_server import PrivateRedis
from earshot.server.settings import Secret, Settings
from earshot.server.storage_keys import (
    KeySource,
    StorageKey,
    StorageKeyError,
    add_key,
    key_file_path,
    read_key_file,
    retire_keys,
)
from tests.conftest import REPO

SESSION, OTHER = "0123456789abcdef", "fedcba9876543210"
FINAL = '{"type": "final", "seq": 3, "text": "my card number is four one one one"}'


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def settings(tmp_path: Path, **values) -> Settings:
    return Settings(data_dir=tmp_path / "data", **values)


def b64(secret: bytes) -> str:
    return base64.b64encode(secret).decode()


# --- sealing --------------------------------------------------------------------------------
def test_a_sealed_value_opens_with_its_session_and_hides_its_text():
    key = StorageKey.new()
    sealer = Sealer([key])
    stored = sealer.seal(SESSION, FINAL)
    assert stored.startswith(f"{PREFIX}{key.id}:") and sealed_key_id(stored) == key.id
    assert "card" not in stored and "four" not in stored
    assert sealer.unseal(SESSION, stored) == FINAL
    assert sealer.seal(SESSION, FINAL) != stored  # a fresh nonce each time


def test_a_value_moved_to_another_session_does_not_open():
    sealer = Sealer([StorageKey.new()])
    with pytest.raises(SealError, match="altered, or it belongs to another session"):
        sealer.unseal(OTHER, sealer.seal(SESSION, FINAL))


@pytest.mark.parametrize("position", [len(PREFIX) + 9 + 2, -3])  # in the nonce; in the tag
def test_a_tampered_value_does_not_open(position):
    sealer = Sealer([StorageKey.new()])
    stored = sealer.seal(SESSION, FINAL)
    flipped = "A" if stored[position] != "A" else "B"
    with pytest.raises(SealError):
        sealer.unseal(SESSION, stored[:position] + flipped + stored[position + 1:])
    with pytest.raises(SealError):
        sealer.unseal(SESSION, stored[:-8])  # cut short


def test_a_value_sealed_with_an_unknown_key_names_the_key_not_the_text():
    stored = Sealer([StorageKey.new()]).seal(SESSION, FINAL)
    other = Sealer([StorageKey.new()])
    with pytest.raises(SealError) as raised:
        other.unseal(SESSION, stored)
    message = str(raised.value)
    assert sealed_key_id(stored) in message and "put that key back into the key file" in message
    assert "card" not in message


def test_a_value_stored_before_encryption_is_read_as_it_is():
    assert Sealer([StorageKey.new()]).unseal(SESSION, FINAL) == FINAL


def test_old_keys_decrypt_and_the_last_one_encrypts():
    old, new = StorageKey.new(), StorageKey.new()
    before = Sealer([old]).seal(SESSION, FINAL)
    sealer = Sealer([old, new])
    assert sealer.unseal(SESSION, before) == FINAL
    assert sealed_key_id(sealer.seal(SESSION, FINAL)) == new.id
    resealed = sealer.reseal(SESSION, before)
    assert sealed_key_id(resealed) == new.id and sealer.unseal(SESSION, resealed) == FINAL
    assert sealer.reseal(SESSION, resealed) is None  # already under the current key
    assert sealed_key_id(sealer.reseal(SESSION, FINAL)) == new.id  # plain text gets sealed


# --- the key file ---------------------------------------------------------------------------
def test_the_first_start_makes_a_private_key_file_and_says_where_once(tmp_path, caplog):
    s = settings(tmp_path)
    with caplog.at_level(logging.INFO, logger="earshot.server.storage_keys"):
        sealer = Sealer.from_settings(s)
        again = Sealer.from_settings(s)
    path = key_file_path(s)
    assert path == tmp_path / "data" / "keys" / "storage.keys"
    assert mode_of(path) == 0o600 and mode_of(path.parent) == 0o700
    keys = read_key_file(path)
    assert [k.id for k in keys] == [sealer.current_key_id] == [again.current_key_id]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and str(path) in said[0]
    assert b64(keys[0].secret) not in caplog.text
    assert [p.name for p in path.parent.iterdir()] == ["storage.keys"]  # no temporary file left


def test_a_key_file_open_to_others_is_refused_like_ssh_does(tmp_path):
    s = settings(tmp_path)
    Sealer.from_settings(s)
    path = key_file_path(s)
    for mode in (0o644, 0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(StorageKeyError, match=rf"open to its group or others \(mode 0{mode:o}\).*chmod 600"):
            Sealer.from_settings(s)


@pytest.mark.parametrize(
    "line, problem",
    [
        ("justonefield", r":3: expected `KEY_ID BASE64KEY`, found 1 fields"),
        ("abcd1234 not*base64!", r":3: the key is not valid base64"),
        ("abcd1234 " + b64(b"short"), r":3: the key is 5 bytes, not 32"),
        ("abcd1234 {key}", r":3: the key id does not match its key"),
        ("{id} {key} extra", r":3: expected `KEY_ID BASE64KEY`, found 3 fields"),
    ],
)
def test_a_malformed_key_file_names_the_line_never_the_key(tmp_path, line, problem):
    good, other = StorageKey.new(), StorageKey.new()
    path = tmp_path / "storage.keys"
    path.write_text("# comment\n" + good.line() + "\n" + line.format(id=other.id, key=b64(other.secret)) + "\n")
    path.chmod(0o600)
    with pytest.raises(StorageKeyError, match=problem) as raised:
        read_key_file(path)
    assert b64(good.secret) not in str(raised.value) and b64(other.secret) not in str(raised.value)


def test_a_key_listed_twice_or_an_empty_file_is_refused(tmp_path):
    key = StorageKey.new()
    path = tmp_path / "storage.keys"
    path.write_text(f"{key.line()}\n\n{key.line()}\n")
    path.chmod(0o600)
    with pytest.raises(StorageKeyError, match=rf":3: key {key.id} is listed twice"):
        read_key_file(path)
    path.write_text("# only a comment\n")
    with pytest.raises(StorageKeyError, match="holds no key"):
        read_key_file(path)


def test_adding_and_retiring_keys_keeps_comments_and_the_mode(tmp_path):
    s = settings(tmp_path)
    first = Sealer.from_settings(s).current_key_id
    path = key_file_path(s)
    added = add_key(path)
    assert [k.id for k in read_key_file(path)] == [first, added.id] and mode_of(path) == 0o600
    assert retire_keys(path, keep=added.id) == [first]
    assert [k.id for k in read_key_file(path)] == [added.id] and mode_of(path) == 0o600
    assert path.read_text().startswith("# Earshot storage keys")


def test_a_settings_key_encrypts_and_the_key_file_still_decrypts(tmp_path):
    s = settings(tmp_path)
    old = Sealer.from_settings(s)
    sealed_before = old.seal(SESSION, FINAL)
    new = StorageKey.new()
    both = Sealer.from_settings(settings(tmp_path, storage_key=Secret(b64(new.secret))))
    assert both.current_key_id == new.id
    assert both.unseal(SESSION, sealed_before) == FINAL
    # With only a settings key and no key file, nothing is made on disk.
    alone = tmp_path / "alone"
    Sealer.from_settings(Settings(data_dir=alone, storage_key=Secret(b64(new.secret))))
    assert not alone.exists()


def test_a_bad_settings_key_is_a_clear_error_without_its_value(tmp_path):
    for value, problem in (("not base64!", "not valid base64"), (b64(b"x" * 16), "16 bytes, not 32")):
        with pytest.raises(StorageKeyError, match=f"storage_key: the key is {problem}") as raised:
            Sealer.from_settings(settings(tmp_path, storage_key=Secret(value)))
        assert value not in str(raised.value)
    with pytest.raises(StorageKeyError, match="does not exist"):
        KeySource.from_settings(
            settings(tmp_path, storage_key=Secret(b64(b"k" * 32)), storage_key_file=str(tmp_path / "none.keys"))
        ).load()


def test_a_running_sealer_takes_up_a_key_added_to_the_file(tmp_path):
    s = settings(tmp_path)
    reader, writer = Sealer.from_settings(s), Sealer.from_settings(s)
    first = read_key_file(key_file_path(s))[0]
    sealed_with_first = Sealer([first]).seal(SESSION, FINAL)
    added = add_key(key_file_path(s))
    # unseal meets an id it does not know: it reads the key file again at once.
    assert reader.unseal(SESSION, Sealer([added]).seal(SESSION, FINAL)) == FINAL
    assert reader.current_key_id == added.id
    # seal looks at the file at most every RECHECK_S.
    writer._checked_at -= Sealer.RECHECK_S
    assert sealed_key_id(writer.seal(SESSION, FINAL)) == added.id
    # A retired key still opens what it sealed, in a process that had loaded it.
    retire_keys(key_file_path(s), keep=added.id)
    writer._checked_at -= Sealer.RECHECK_S
    assert sealed_key_id(writer.seal(SESSION, FINAL)) == added.id
    assert writer.unseal(SESSION, sealed_with_first) == FINAL


def test_serve_refuses_a_key_file_open_to_others(tmp_path):
    s = settings(tmp_path)
    Sealer.from_settings(s)
    key_file_path(s).chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "serve", "--data-dir", str(s.data_dir), "--redis-url", "redis://127.0.0.1:1/0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "open to its group or others (mode 0644)" in result.stderr and "chmod 600" in result.stderr


# --- the private Redis's files ----------------------------------------------------------------
def test_the_private_redis_keeps_its_files_to_its_owner(tmp_path):
    folder = tmp_path / "redis"
    # An older run's folder, made with the default umask.
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "appendonlydir").mkdir()
    (folder / "appendonlydir").chmod(0o755)
    (folder / "appendonlydir" / "old.aof").write_text("")
    (folder / "appendonlydir" / "old.aof").chmod(0o644)
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        client = redis.Redis(unix_socket_path=str(private.socket_path))
        client.set("earshot:probe", "x")
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        client.close()
        assert mode_of(folder) == 0o700
        found = {}
        for parent, folders, files in os.walk(folder):
            for name in folders + files:
                found[Path(parent, name).relative_to(folder).as_posix()] = mode_of(Path(parent, name))
        assert "appendonlydir" in found and "redis.log" in found and "redis.sock" in found
        assert any(name.endswith(".aof") and name != "appendonlydir/old.aof" for name in found)
        for name, mode in found.items():
            assert mode == (0o700 if (folder / name).is_dir() else 0o600), (name, oct(mode))
    finally:
        private.stop()

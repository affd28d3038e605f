"""`earshot rotate-keys`: a new storage key encrypts from now on, and what is stored is re-encrypted with it.

1. A new key is added as the last line of the key file (made if there is none).
2. Servers that share the key file take it up within `Sealer.RECHECK_S`
   (server/at_rest.py); the command waits twice that, so whatever they write
   after the wait is under the new key, and what they wrote before is in Redis
   for step 3 to find.
3. Every sealed value in Redis is sealed again with the new key
   (server/key_rotation.py); values stored before encryption existed are
   sealed too. So is every call recording under recording_dir
   (server/recording_files.py); a part still being written counts as
   unreadable (no key is retired): run it again after the call.
4. An audit entry (`keys.rotate`) records the counts.

`--retire-old` then drops the other keys from the file, when every value
opened, and asks Redis to rewrite its append-only file so that it no longer
holds values under the retired keys.

A key kept in settings (`storage_key`, EARSHOT_STORAGE_KEY) cannot be
rotated by this command: it names one key, and nothing here can change a
server's environment. The message says what to do instead;
`--no-new-key` is its last step (re-encrypt with the key that encrypts now).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from earshot.server.at_rest import Sealer
from earshot.server.audit import AuditEntry, AuditLog
from earshot.server.cli import Command, CommandError, command_redis_url
from earshot.server.key_rotation import ResealCounts, Resealer, RotationError
from earshot.server.recording_files import reseal_recordings
from earshot.server.settings import Settings
from earshot.server.settings_sources import add_settings_arguments, settings_from_args
from earshot.server.storage_keys import KeySource, add_key, retire_keys
from earshot.server.store import connect

SETTINGS_KEY_STEPS = """the storage key comes from the settings (storage_key, EARSHOT_STORAGE_KEY), which hold one key; \
rotate-keys adds keys to a key file only. To rotate a key kept in settings: \
(1) put the current key into a key file (mode 0600) as the line `{key_id} <the current key's base64>` \
and set storage_key_file to that file on every server; \
(2) set storage_key to a new key (base64 of 32 random bytes: `openssl rand -base64 32`) and restart the servers: \
the new key encrypts, the file's key still decrypts; \
(3) run `earshot rotate-keys --no-new-key` with the new settings to re-encrypt what is stored; \
then delete the old key's line"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-new-key", action="store_true",
        help="add no key: re-encrypt with the key that encrypts now (after storage_key was changed, "
             "or to finish a rotation that stopped part way)",
    )
    parser.add_argument(
        "--retire-old", action="store_true",
        help="then drop every other key from the key file (only if every stored value opened) and rewrite "
             "Redis's append-only file",
    )
    add_settings_arguments(parser)


def _new_key(source: KeySource) -> str:
    if source.settings_key is not None:
        raise CommandError(SETTINGS_KEY_STEPS.format(key_id=source.settings_key.id))
    added = add_key(source.path)
    print(f"added storage key {added.id} to {source.path}: it encrypts from now on")
    # Servers sharing the key file look at it at most every RECHECK_S: after this, all of them use the new key.
    time.sleep(2 * Sealer.RECHECK_S)
    return added.id


@dataclass
class Rotation:
    counts: ResealCounts
    retired: list[str] = field(default_factory=list)
    aof_rewritten: bool = False


async def _rotate(url: str, settings: Settings, sealer: Sealer, source: KeySource, retire: bool) -> Rotation:
    """Re-encrypt, retire the other keys if asked (and every value opened), and record it in the audit stream."""
    client = connect(url)
    try:
        done = Rotation(await Resealer(client, sealer).run())
        parts = await asyncio.to_thread(reseal_recordings, settings, sealer)  # call recordings on disk
        done.counts.add(ResealCounts(resealed=parts.resealed, current=parts.current, unreadable=parts.unreadable))
        if retire and not done.counts.unreadable:
            done.retired = retire_keys(source.path, keep=sealer.current_key_id)
            done.aof_rewritten = await _rewrite_append_only_file(client)
        detail = {"key": sealer.current_key_id, **done.counts.as_dict(), "retired": done.retired}
        await AuditLog(client, settings.audit_retention_s).append(AuditEntry(who="cli", action="keys.rotate", detail=detail))
        return done
    finally:
        await client.aclose()


async def _rewrite_append_only_file(client: aioredis.Redis, timeout_s: float = 120.0) -> bool:
    """Have Redis rewrite its append-only file, and wait until it has (a Redis stopped meanwhile would not)."""
    try:
        if (await client.config_get("appendonly")).get("appendonly") != "yes":
            return False
        await client.bgrewriteaof()
    except ResponseError:  # CONFIG is disabled on some hosted Redis
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = await client.info("persistence")
        if not state["aof_rewrite_in_progress"] and not state["aof_rewrite_scheduled"]:
            return state.get("aof_last_bgrewrite_status") == "ok"
        await asyncio.sleep(0.1)
    return False


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    source = KeySource.from_settings(settings)
    if args.retire_old and source.settings_key is not None:
        raise CommandError("--retire-old drops keys from the key file; with storage_key set, delete the old lines yourself")
    new_id = None if args.no_new_key else _new_key(source)
    sealer = Sealer.from_settings(settings)
    if new_id is not None and sealer.current_key_id != new_id:
        raise CommandError(f"the key file changed during the rotation: key {sealer.current_key_id} encrypts, not {new_id}")
    with command_redis_url(settings) as url:
        try:
            done = asyncio.run(_rotate(url, settings, sealer, source, args.retire_old))
        except (RedisError, OSError) as exc:
            again = "" if new_id is None else f"; key {new_id} is in the key file already: once Redis is back, run rotate-keys --no-new-key"
            raise CommandError(f"cannot re-encrypt: Redis at {url}: {exc}{again}") from None
        except RotationError as exc:
            raise CommandError(str(exc)) from None
    counts = done.counts
    print(
        f"key {sealer.current_key_id}: {counts.resealed} values re-encrypted, {counts.sealed_plain} stored before "
        f"encryption now sealed, {counts.current} already under it, {counts.unreadable} unreadable, "
        f"in {counts.keys} keys ({counts.retries} retried as live servers wrote)"
    )
    if args.retire_old:
        print(f"retired keys: {', '.join(done.retired) or 'none'}")
    if done.aof_rewritten:
        print("Redis rewrote its append-only file: it holds no value under the retired keys")
    if counts.unreadable:
        print("some values did not open (their key is missing, or they were altered): they are left as they are"
              + ("; no key was retired" if args.retire_old else ""))
        return 1
    return 0


COMMAND = Command(
    help="add a new storage key and re-encrypt what is stored with it",
    add_arguments=_add_arguments,
    run=_run,
    description="A new storage key encrypts from now on, and what is stored in Redis is re-encrypted with it.",
)

"""A session's Redis keys, and the scripts that write and delete them.

    earshot:session:{id}           hash, the record: mode role difficulty state token_sha256 created_at owner team placed_on
    earshot:session:{id}:live      hash, the live state: audio_s next_utterance_id pace interview
    earshot:session:{id}:finals    stream, one entry per final: ID "{seq}-0", field "event"
    earshot:session:{id}:report    string, an interview's report
    earshot:session:{id}:summary   string, an assist call's summary
    earshot:session:{id}:facts     string, the call's analytics facts (server/facts_store.py)
    earshot:session:{id}:rescored  string, a recorded call's re-scored transcript (server/rescoring.py)
    earshot:session:{id}:corrections  hash, the agent's intent corrections (server/feedback_store.py)
    earshot:owner:{sha256(owner)}  set, the ids of the sessions an identity created (the erasure index)

SESSION_KEYS is the one list of a session's keys and of the retention each has
(server/retention.py): a purge or an erasure deletes exactly these, so a key added
later is deleted with the others once it is listed here.

Why scripts. A write to a session must not bring back a session that is gone:
after a DELETE ...?purge=true, a live call's write-behind queue, its outbox or a
report being built may still write. And each key's expiry is the session's
created_at plus its retention, which the writer does not know. WRITE_SCRIPT does
both in one round trip, atomically: it reads created_at from the record, writes
nothing when the record is not there, and sets every key it writes to expire at
that absolute time (PEXPIREAT): writing again sets the same time, never a later one.
PURGE_SCRIPT and ERASE_SCRIPT delete, each at once (a script runs alone); a script,
not a MULTI, because Redis refuses every command of a transaction once it is at its
maxmemory, and deleting is what frees it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

from earshot.server.retention import Retention

KEY_PREFIX = "earshot:session:"
OWNER_PREFIX = "earshot:owner:"
SESSION_KEYS = {
    "": "record", ":live": "live", ":finals": "transcripts", ":report": "reports", ":summary": "reports",
    ":facts": "reports", ":rescored": "reports",
    ":corrections": "transcripts",  # a correction holds an utterance's words: kept as the transcript is
}
LIVE_FIELDS = ("audio_s", "next_utterance_id", "heard_at", "pace", "interview")  # in the :live hash; the others in the record


def session_key(session_id: str, suffix: str = "") -> str:
    assert suffix in SESSION_KEYS, suffix
    return KEY_PREFIX + session_id + suffix


def owner_key(owner: str) -> str:
    """The erasure index of an identity: named by a digest, so no name becomes part of a key."""
    return OWNER_PREFIX + hashlib.sha256(owner.encode()).hexdigest()


# KEYS: the record, then the owner's index when the session has an owner.
# ARGV: the record's expiry, the session id, the index's expiry, now (all ms since the epoch), then
# the record's fields (name, value, ...). The index must outlive every session it lists: its expiry
# only ever moves later (a shorter retention set since must not cut it below an older session's).
CREATE_SCRIPT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if #KEYS == 2 then
  redis.call('SADD', KEYS[2], ARGV[2])
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 or tonumber(ARGV[4]) + left < tonumber(ARGV[3]) then
    redis.call('PEXPIREAT', KEYS[2], ARGV[3])
  end
end
return 1
"""

# KEYS: the record, the live hash, the finals stream, a document (report or summary).
# ARGV: four retentions in ms, one per key ("" leaves that key's expiry as it is); the record's
# fields (a count, then name, value, ...); the live hash's fields (likewise); a final's stream ID
# ("" for none) and its event; a document ("" for none). Returns 1, or 0 when the session is gone.
# A final's ID not above the last one means an earlier try, whose reply was lost, stored it already.
WRITE_SCRIPT = """
local created = redis.call('HGET', KEYS[1], 'created_at')
if not created then return 0 end
local at = 5
for k = 1, 2 do
  local n = tonumber(ARGV[at])
  if n > 0 then redis.call('HSET', KEYS[k], unpack(ARGV, at + 1, at + 2 * n)) end
  at = at + 1 + 2 * n
end
if ARGV[at] ~= '' then
  local added = redis.pcall('XADD', KEYS[3], ARGV[at], 'event', ARGV[at + 1])
  if type(added) == 'table' and added.err and not string.find(added.err, 'equal or smaller', 1, true) then
    return added
  end
end
if ARGV[at + 2] ~= '' then redis.call('SET', KEYS[4], ARGV[at + 2]) end
local base = math.floor(tonumber(created) * 1000 + 0.5)
for k = 1, 4 do
  if ARGV[k] ~= '' then redis.call('PEXPIREAT', KEYS[k], string.format('%.0f', base + tonumber(ARGV[k]))) end
end
return 1
"""


# KEYS: the owner's index, or none. ARGV: the session id, the key prefix, then SESSION_KEYS' suffixes.
# Returns how many of the session's keys were deleted.
PURGE_SCRIPT = """
local keys = {}
for i = 3, #ARGV do keys[#keys + 1] = ARGV[2] .. ARGV[1] .. ARGV[i] end
local deleted = redis.call('DEL', unpack(keys))
if #KEYS == 1 then redis.call('SREM', KEYS[1], ARGV[1]) end
return deleted
"""

# KEYS: the owner's index. ARGV: the key prefix, then SESSION_KEYS' suffixes. Deletes every key of
# every session the index lists, and the index; returns the ids and the keys deleted of each.
ERASE_SCRIPT = """
local ids = redis.call('SMEMBERS', KEYS[1])
local counts = {}
for i, id in ipairs(ids) do
  local keys = {}
  for j = 2, #ARGV do keys[#keys + 1] = ARGV[1] .. id .. ARGV[j] end
  counts[i] = redis.call('DEL', unpack(keys))
end
redis.call('DEL', KEYS[1])
return {ids, counts}
"""


def create_arguments(
    session_id: str, fields: dict[str, str], created_at: float, owner: str, retention: Retention
) -> tuple[list[str], list[str]]:
    """CREATE_SCRIPT's keys and arguments for a new session's record (expiring after `retention.pending_s`)."""
    now_ms = round(created_at * 1000)
    keys = [session_key(session_id)] + ([owner_key(owner)] if owner else [])
    args = [str(now_ms + retention.pending_s * 1000), session_id, str(now_ms + retention.record_s * 1000), str(now_ms)]
    for name, value in fields.items():
        args += [name, value]
    return keys, args


@dataclass(frozen=True)
class SessionWrite:
    """One write to a session, run by WRITE_SCRIPT: every key it writes gets its expiry.

    fix_record: the record's expiry becomes its full one (created_at + the longest retention);
    a call's writes do that (its first write ends the short life of a pending session). False for
    the state a DELETE sets, which must not lengthen a session that never connected.
    """

    fields: dict[str, str] = field(default_factory=dict)
    final: Optional[tuple[str, str]] = None  # (stream ID, the event's JSON)
    document: Optional[tuple[str, str]] = None  # (":report", ":summary" or ":rescored", the JSON)
    fix_record: bool = True

    def keys(self, session_id: str) -> list[str]:
        document = self.document[0] if self.document else ":report"
        return [session_key(session_id, suffix) for suffix in ("", ":live", ":finals", document)]

    def arguments(self, retention: Retention) -> list[str]:
        live = {k: v for k, v in self.fields.items() if k in LIVE_FIELDS}
        record = {k: v for k, v in self.fields.items() if k not in LIVE_FIELDS}

        def ms(kind: str, written: bool) -> str:
            return str(retention.seconds(kind) * 1000) if written else ""

        args = [ms("record", self.fix_record), ms("live", bool(live)), ms("transcripts", self.final is not None),
                ms("reports", self.document is not None)]
        for part in (record, live):
            args.append(str(len(part)))
            for name, value in part.items():
                args += [name, value]
        args += list(self.final or ("", ""))
        args.append(self.document[1] if self.document else "")
        return args

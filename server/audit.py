"""The audit stream: who read, deleted or re-keyed what, when, and from where.

One Redis stream, `earshot:audit`, one entry per act:

    at        seconds since the epoch, when the act was done
    who       the identity's name; `session-token` for a holder of a session's own token;
              `anonymous` with auth none; `cli` for a command run on the server's machine
    role      the identity's role, or empty
    action    transcript.read | report.read | summary.read | session.delete | session.purge |
              identity.erase | keys.rotate | audit.read | intent.correct | corrections.read |
              intent_heads.reload
    session   the session id the act was on, or empty
    remote    the caller's address as the server saw it (a proxy's, behind one), or empty
    outcome   ok, or the error code it was refused with
    detail    JSON of counts and names (keys deleted, values re-encrypted): never transcript text

Entries older than `audit_retention_s` are trimmed as new ones are added
(XADD with MINID, approximate: Redis trims whole nodes, so a few older
entries may outlive it briefly). Only admins read the stream, through
`GET /api/admin/audit`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import redis.asyncio as aioredis

AUDIT_KEY = "earshot:audit"
ACTIONS = (
    "transcript.read",
    "report.read",
    "summary.read",
    "session.delete",
    "session.purge",
    "identity.erase",
    "keys.rotate",
    "audit.read",
    "intent.correct",  # an agent corrected an utterance's intents (server/feedback_api.py)
    "corrections.read",  # a call's intent corrections read back (server/feedback_api.py)
    "intent_heads.reload",  # an admin had the intent heads loaded again (server/intent_reload.py)
)


@dataclass(frozen=True)
class AuditEntry:
    who: str
    action: str
    role: str = ""
    session: str = ""
    remote: str = ""
    outcome: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)  # counts and names only, never what was said
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")

    def fields(self) -> dict[str, str]:
        values = asdict(self)
        values["at"] = f"{self.at:.3f}"
        values["detail"] = json.dumps(self.detail, sort_keys=True)
        return values

    @classmethod
    def from_fields(cls, values: dict[str, str]) -> "AuditEntry":
        return cls(
            who=values.get("who", ""),
            action=values.get("action", ""),
            role=values.get("role", ""),
            session=values.get("session", ""),
            remote=values.get("remote", ""),
            outcome=values.get("outcome", ""),
            detail=json.loads(values.get("detail") or "{}"),
            at=float(values.get("at", 0)),
        )


class AuditLog:
    """Appends to and reads the audit stream; the client must decode responses (decode_responses=True)."""

    def __init__(self, client: aioredis.Redis, retention_s: int) -> None:
        self._redis = client
        self._retention_s = retention_s

    async def append(self, entry: AuditEntry) -> str:
        oldest_ms = int((time.time() - self._retention_s) * 1000)
        return await self._redis.xadd(AUDIT_KEY, entry.fields(), minid=oldest_ms, approximate=True)

    async def page(
        self, after: str = "-", count: int = 100, session: Optional[str] = None, scan: Optional[int] = None
    ) -> tuple[list[tuple[str, AuditEntry]], Optional[str]]:
        """Entries after the entry ID `after` ("-": from the oldest), oldest first, at most `count` of them
        (with `session`, only that session's), and the ID of the last stream entry looked at (None when there was none after `after`).

        That ID is where the next page starts. `scan` (default `count`) bounds how many stream entries
        are looked at: with `session`, a larger one finds that session's entries further on, and a page
        may still hold fewer than `count`, none even, while more follow.
        """
        scan = count if scan is None else scan
        found: list[tuple[str, AuditEntry]] = []
        last: Optional[str] = None
        looked = 0
        while looked < scan and len(found) < count:
            position = last or after
            wanted = min(scan - looked, 1000)
            batch = await self._redis.xrange(
                AUDIT_KEY, min="-" if position == "-" else f"({position}", max="+", count=wanted
            )
            for entry_id, values in batch:
                looked, last = looked + 1, entry_id
                entry = AuditEntry.from_fields(values)
                if session is None or entry.session == session:
                    found.append((entry_id, entry))
                    if len(found) == count:
                        break
            if len(batch) < wanted:  # the end of the stream
                break
        return found, last

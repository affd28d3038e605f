"""How long what a session stores is kept: a retention per kind, each counted from the session's creation.

    record       the session itself (mode, role, state, owner, ...): the longest of the three below,
                 so a session answers for as long as anything of it is kept
    live         where a dropped call resumes, the interview's state, pace    retention_live_s
    transcripts  the finals                                                   retention_transcripts_s
    reports      an interview's report, an assist call's summary              retention_reports_s
    pending      a session that never connects                                pending_session_ttl_s,
                 never beyond retention_live_s (its call could not start later anyway)

Each key's expiry is an absolute time, the session's created_at plus its kind's retention
(server/store_keys.py sets it with PEXPIREAT): writing again sets the same time, so nothing a
call or a caller does (a write, the end of a call, a DELETE) ever extends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from earshot.server.settings import Settings

KINDS = ("record", "live", "transcripts", "reports")


@dataclass(frozen=True)
class Retention:
    live_s: int
    transcripts_s: int
    reports_s: int
    pending_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Retention":
        return cls(
            live_s=settings.retention_live_s,
            transcripts_s=settings.retention_transcripts_s,
            reports_s=settings.retention_reports_s,
            pending_s=min(settings.pending_session_ttl_s, settings.retention_live_s),
        )

    @property
    def record_s(self) -> int:
        return max(self.live_s, self.transcripts_s, self.reports_s)

    def seconds(self, kind: str) -> int:
        """The retention of a kind of KINDS."""
        return {"record": self.record_s, "live": self.live_s, "transcripts": self.transcripts_s,
                "reports": self.reports_s}[kind]

    def live_until(self, created_at: float) -> float:
        """When a session's live state goes: no call may start (or resume) after it."""
        return created_at + self.live_s

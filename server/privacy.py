"""What a call stores, for how long, and what is removed first: GET /api/privacy, and the pages' consent line.

The numbers are the settings' (server/retention.py, the redact_<mode> settings); the
sentence each page shows before it opens the microphone is made here, once, so the
interview page, the assist overlay and the API say the same thing.
"""

from __future__ import annotations

from typing import Any

from earshot.models.redaction.kinds import KINDS, WORDS
from earshot.server.configs import redacted_kinds
from earshot.server.modes import MODE_KINDS
from earshot.server.retention import Retention
from earshot.server.settings import Settings

DOCUMENTS = {"interview": "report", "assist": "call summary"}  # what a mode keeps beside its transcript


def duration_words(seconds: int) -> str:
    """`7 days`, `1 day`, `36 hours`, `2 minutes`: the largest whole unit, rounding up only below an hour."""
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def kinds_in_order(settings: Settings, mode: str) -> list[str]:
    chosen = redacted_kinds(settings, mode)
    return [kind for kind in KINDS if kind in chosen]


def consent_sentence(settings: Settings, mode: str) -> str:
    retention = Retention.from_settings(settings)
    kept = f"This call is transcribed and the transcript is stored for {duration_words(retention.transcripts_s)}"
    if mode in DOCUMENTS:
        kept += f" (the {DOCUMENTS[mode]} for {duration_words(retention.reports_s)})"
    if settings.recording:
        kept += f"; the audio is recorded, encrypted, and kept for {duration_words(settings.retention_recordings_s)}."
    else:
        kept += "; the audio itself is not kept."
    kinds = [WORDS[kind] for kind in kinds_in_order(settings, mode)]
    if not kinds:
        return kept + " Nothing said is removed before it is stored."
    listed = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
    return f"{kept} {listed[0].upper()}{listed[1:]} are removed before anything is stored."


def privacy_document(settings: Settings) -> dict[str, Any]:
    retention = Retention.from_settings(settings)
    kept = {"live": retention.live_s, "transcripts": retention.transcripts_s, "reports": retention.reports_s}
    return {
        "retention_s": kept,
        "retention": {kind: duration_words(seconds) for kind, seconds in kept.items()},
        "redacted": {mode: kinds_in_order(settings, mode) for mode in MODE_KINDS},
        "consent": {mode: consent_sentence(settings, mode) for mode in MODE_KINDS},
        "audio_stored": settings.recording,
        **({"audio_retention_s": settings.retention_recordings_s} if settings.recording else {}),
    }

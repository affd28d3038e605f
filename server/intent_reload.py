"""New intent heads without a restart: on SIGHUP, or POST /api/admin/intent-heads/reload (admin).

    `earshot train-intent --out <intent_heads_dir>`, then `kill -HUP <pid>` (or the admin call)
      -> the heads are read again from intent_heads_dir, built into a classifier off the event loop,
         tried once on each label set on the encoder's thread, and swapped in for the finals after it

Calls go on throughout: nothing is closed, and a final already queued for
classification keeps the heads it was given. A reload that fails (a head file
missing or malformed, heads that do not fit the encoder) changes nothing: the
heads in use stay, the error is logged, and the admin call answers 409
`intent_heads_invalid` with the reason. One reload runs at a time; one asked
for meanwhile waits for it, then reads the files again.

The encoder the heads name is loaded again only when it is not the shared one
(server/encoder_service.py `load_classifier`): a head trained on another encoder
brings it along, as at start.

Cost (measured: 10 reloads of the bundled heads in one process, on the shared
2-core dev VM at load average ~12, so noisy): a reload takes 0.12-0.6 s (median 0.12 s on a quieter
run); the event loop's worst lag during one was 23-110 ms against 15-23 ms idle in the same runs: the
worker thread's JSON parsing holds the GIL for a moment, a live call's frames wait in their buffers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from earshot.models.intent import HEADS_DIR, LABEL_SETS, IntentClassifier, IntentHeadError
from earshot.models.model_files import ModelMissingError
from earshot.server.encoder_service import EncoderService, load_classifier
from earshot.server.settings import Settings

log = logging.getLogger(__name__)

TRIAL_TEXT = "hello, can you hear me"  # one classification per label set before the heads go live


class ReloadError(Exception):
    """A reload that changed nothing: `status` and `code` for the admin call's JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class IntentReloader:
    def __init__(self, settings: Settings, encoders: EncoderService) -> None:
        self._settings = settings
        self._encoders = encoders
        self._lock = asyncio.Lock()
        self.reloads = 0  # heads swapped in since start

    @property
    def heads_dir(self) -> Path:
        configured = self._settings.intent_heads_dir
        return Path(configured).expanduser() if configured else HEADS_DIR

    async def reload(self) -> dict[str, Any]:
        """Load the heads again and swap them in; what is in use now. Raises ReloadError, changing nothing."""
        if self._encoders.intents is None:
            raise ReloadError(409, "intent_off", "intent classification is off (intent_enabled is false): no heads to reload")
        async with self._lock:
            started = time.perf_counter()
            try:
                # Reading the files, and any encoder they name, is blocking work: not on the event loop.
                fresh: IntentClassifier = await asyncio.to_thread(load_classifier, self._settings, self._encoders.encoder)
                for label_set in LABEL_SETS:
                    await self._encoders.run(fresh.classify, TRIAL_TEXT, label_set)
            except (IntentHeadError, ModelMissingError, OSError, ValueError, RuntimeError) as exc:
                log.error("intent heads not reloaded from %s (the heads in use stay): %s", self.heads_dir, exc)
                raise ReloadError(409, "intent_heads_invalid", f"the heads in use stay: {exc}") from None
            self._encoders.use_intents(fresh)
            self.reloads += 1
            took_s = time.perf_counter() - started
        log.info("intent heads reloaded from %s in %.2f s (reload %d)", self.heads_dir, took_s, self.reloads)
        return {
            "status": "reloaded",
            "heads_dir": str(self.heads_dir),
            "label_sets": {name: list(head.labels) for name, head in fresh.heads.items()},
            "reloads": self.reloads,
            "took_s": round(took_s, 3),
        }

    async def reload_logged(self) -> None:
        """A reload whose outcome only goes to the log (SIGHUP)."""
        try:
            await self.reload()
        except ReloadError as exc:
            if exc.code == "intent_off":
                log.warning("SIGHUP: %s", exc.message)


# The admin call's answer in the OpenAPI document (server/openapi.py).
HEADS_RELOADED: dict[str, Any] = {
    "type": "object",
    "required": ["status", "heads_dir", "label_sets", "reloads", "took_s"],
    "properties": {
        "status": {"type": "string", "enum": ["reloaded"]},
        "heads_dir": {"type": "string"},
        "label_sets": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "reloads": {"type": "integer", "description": "heads swapped in since the server started"},
        "took_s": {"type": "number"},
    },
}

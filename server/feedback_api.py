"""An agent's one-click correction of an utterance's intents: POST /api/sessions/{id}/corrections.

    body    {"utterance_id": int, "speaker": "agent" | "customer", "add": [label, ...], "remove": [label, ...]}
    answer  {"session_id", "utterance_id", "speaker", "label_set", "labels", "added", "removed", "head_labels"}

The overlay sends one request per click (client/assist-feedback.js) and shows
the `labels` of the answer. The server finds the utterance in what it holds of
the call: the live call's record of finals and intents when the call is live
here (a call live on another instance is answered there, server/routing.py),
else the call summary stored when the call ended. Its words and the labels the
head gave are taken from there, never from the request.

The stored `Correction` (models/intent_feedback.py) has `labels`, the
utterance's labels after every click so far, and `added` / `removed` against
what the head said: a repeated click changes nothing, and a label removed
and added back leaves a correction that confirms the head. One correction per
utterance (server/feedback_store.py), updated by each click.

`speaker` names the side: the two tracks of an assist call number their
utterances apart, so an id alone may name two utterances (400
`speaker_required` then). Bad input: an unknown label is 400 `unknown_label`
whose error lists the label set's `labels`; an unknown session or utterance
is 404.

GET /api/sessions/{id}/corrections reads them back (the overlay after a
reconnect): `{"session_id", "label_set", "corrections": [...]}`, one item per
corrected utterance in utterance order, `{"speaker", "utterance_id", "labels",
"added", "removed", "head_labels", "agent", "at"}` (`stored_corrections`; the
call summary carries the same list as its `corrections`). Who may read them is
who may read the call's summary (server/access.py `summary read`); an
interview or transcribe session is 404 `no_intents`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from earshot.models.intent import HEADS_DIR
from earshot.models.intent_feedback import Correction
from earshot.server.access import caller
from earshot.server.audit_trail import audited_session, record_act
from earshot.server.errors import ApiError
from earshot.server.feedback_store import CorrectionConflict, FeedbackStore
from earshot.server.modes import MODE_KINDS
from earshot.server.modes.assist import AssistMode
from earshot.server.protocol import SPEAKERS
from earshot.server.request_checks import read_json
from earshot.server.routing import answered_by_holder
from earshot.server.store import SessionRecord

if TYPE_CHECKING:
    from earshot.server.api import AppState

log = logging.getLogger(__name__)

# The label sets' labels and definitions (what training learns); read here as JSON, not through the
# training code's reader (models/intent_dataset.py), which a serving process does not load.
LABELS_FILE = HEADS_DIR.parent / "intent_data" / "labels.json"

MAX_LABELS = 32  # per list: a label set has ~10
MAX_UTTERANCE_ID = 2**53  # what a browser's number holds exactly
WRITE_TRIES = 5  # reads and writes again when another click on the utterance was stored meanwhile


@dataclass(frozen=True)
class CorrectionRequest:
    utterance_id: int
    speaker: Optional[str]
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True)
class Utterance:
    speaker: str
    utterance_id: int
    text: str
    head_labels: tuple[str, ...]  # what the intent head said, best first


class Feedback:
    """The corrections' store and the label sets' labels (models/intent_data/labels.json), read once.

    The labels of the heads in use count too (a head retrained on more labels), read at each request."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        try:
            self.label_sets = {name: tuple(labels) for name, labels in json.loads(LABELS_FILE.read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("intent labels not read from %s (only the heads' labels can be corrected): %s", LABELS_FILE, exc)
            self.label_sets = {}

    def labels(self, label_set: str, heads: Any) -> tuple[str, ...]:
        """Every label an utterance of `label_set` may carry: labels.json's, then any more the loaded head has."""
        head = heads.heads.get(label_set) if heads is not None else None
        return tuple(dict.fromkeys((*self.label_sets.get(label_set, ()), *(head.labels if head is not None else ()))))


def parse_request(data: dict[str, Any]) -> CorrectionRequest:
    utterance_id = data.get("utterance_id")
    if isinstance(utterance_id, bool) or not isinstance(utterance_id, int) or not 0 <= utterance_id <= MAX_UTTERANCE_ID:
        raise ApiError(400, "bad_utterance_id", "utterance_id must be a whole number, 0 or more")
    speaker = data.get("speaker")
    if speaker is not None and speaker not in SPEAKERS:
        raise ApiError(400, "bad_speaker", f"speaker must be one of: {', '.join(SPEAKERS)}")
    lists = {}
    for name in ("add", "remove"):
        value = data.get(name, [])
        if not isinstance(value, list) or len(value) > MAX_LABELS or not all(isinstance(v, str) for v in value):
            raise ApiError(400, "bad_labels", f"{name} must be a list of at most {MAX_LABELS} label names")
        lists[name] = tuple(dict.fromkeys(value))
    if not lists["add"] and not lists["remove"]:
        raise ApiError(400, "empty_correction", "name a label to add or to remove")
    both = sorted(set(lists["add"]) & set(lists["remove"]))
    if both:
        raise ApiError(400, "conflicting_labels", f"added and removed at once: {', '.join(both)}")
    return CorrectionRequest(utterance_id, speaker, lists["add"], lists["remove"])


def corrected(
    utterance: Utterance, previous: Optional[Correction], request: CorrectionRequest, label_set: str,
    session_id: str, agent: str, at: float,
) -> Correction:
    """The utterance's correction after this click: the labels so far, this change applied."""
    head = set(utterance.head_labels)
    labels = set(previous.labels) if previous is not None else set(head)
    labels = (labels | set(request.add)) - set(request.remove)
    return Correction(
        label_set=label_set,
        text=utterance.text,
        labels=tuple(sorted(labels)),
        added=tuple(sorted(labels - head)),
        removed=tuple(sorted(head - labels)),
        session_id=session_id,
        utterance_id=utterance.utterance_id,
        agent=agent,
        at=round(at, 3),
    )


async def correct_intents(request: Request) -> Response:
    state: AppState = request.app.state.earshot
    data = await read_json(request)
    record = await audited_session(request, "intent correct", "intent.correct")
    wanted = parse_request(data)
    label_set = MODE_KINDS[record.mode].intent_label_set
    if record.mode != "assist" or label_set is None:
        raise ApiError(404, "no_intents", "only the utterances of assist calls can be corrected")
    elsewhere = await answered_by_holder(state, request, record.session_id)
    if elsewhere is not None:  # the call is live on another instance: its record of the call is there
        return elsewhere
    utterance = await _find_utterance(state, record, wanted)
    known = tuple(dict.fromkeys((*state.feedback.labels(label_set, state.encoders.intents), *utterance.head_labels)))
    unknown = [label for label in (*wanted.add, *wanted.remove) if label not in known]
    if unknown:
        raise ApiError(
            400, "unknown_label", f"not a label of {label_set}: {', '.join(unknown)[:200]}; the labels are listed",
            extra={"label_set": label_set, "labels": list(known)},
        )
    identity = caller(request)
    # The identity that sent it; with the session's token (the overlay's), the agent who created the session.
    agent = identity.name if identity is not None else record.owner
    correction = await _store(state.feedback.store, utterance, wanted, label_set, record.session_id, agent)
    await record_act(request, "intent.correct", record.session_id, utterance_id=utterance.utterance_id,
                     added=len(correction.added), removed=len(correction.removed))
    return JSONResponse({
        "session_id": record.session_id,
        "utterance_id": utterance.utterance_id,
        "speaker": utterance.speaker,
        "label_set": label_set,
        "labels": list(correction.labels),
        "added": list(correction.added),
        "removed": list(correction.removed),
        "head_labels": list(utterance.head_labels),
    })


def correction_item(speaker: str, correction: Correction) -> dict[str, Any]:
    """One stored correction as the read-back and the summary show it (no words: the transcript has them)."""
    # labels = head + added - removed, added and removed against the head: so the head is labels - added + removed.
    head = (set(correction.labels) - set(correction.added)) | set(correction.removed)
    return {
        "speaker": speaker,
        "utterance_id": correction.utterance_id,
        "labels": list(correction.labels),
        "added": list(correction.added),
        "removed": list(correction.removed),
        "head_labels": sorted(head),
        "agent": correction.agent,
        "at": correction.at,
    }


async def stored_corrections(store: FeedbackStore, session_id: str) -> list[dict[str, Any]]:
    """The session's corrections as `correction_item`s, in utterance order."""
    return [correction_item(speaker, correction) for speaker, correction in await store.of_session(session_id)]


async def read_corrections(request: Request) -> Response:
    """GET /api/sessions/{id}/corrections: the call's stored corrections (none yet: an empty list)."""
    state: AppState = request.app.state.earshot
    record = await audited_session(request, "summary read", "corrections.read")
    label_set = MODE_KINDS[record.mode].intent_label_set
    if record.mode != "assist" or label_set is None:
        raise ApiError(404, "no_intents", "only the utterances of assist calls have corrections")
    items = await stored_corrections(state.feedback.store, record.session_id)
    await record_act(request, "corrections.read", record.session_id, corrections=len(items))
    return JSONResponse({"session_id": record.session_id, "label_set": label_set, "corrections": items})


async def _store(
    store: FeedbackStore, utterance: Utterance, wanted: CorrectionRequest, label_set: str, session_id: str, agent: str,
) -> Correction:
    for _ in range(WRITE_TRIES):
        previous, raw = await store.read(session_id, utterance.speaker, utterance.utterance_id)
        correction = corrected(utterance, previous, wanted, label_set, session_id, agent, time.time())
        try:
            if not await store.write(correction, utterance.speaker, raw):
                raise ApiError(404, "unknown_session", "no such session")  # purged or erased meanwhile
            return correction
        except CorrectionConflict:
            continue
    raise ApiError(409, "correction_busy", "this utterance's correction kept changing; send the click again")


async def _find_utterance(state: "AppState", record: SessionRecord, wanted: CorrectionRequest) -> Utterance:
    """The utterance in the live call here, else in the summary stored when the call ended."""
    lines: list[dict[str, Any]] = []
    call = state.calls.get(record.session_id)
    if call is not None and isinstance(call.mode, AssistMode):
        lines = _matching(call.mode.summary()["transcript"], wanted)
    if not lines:  # a call that ended, or an utterance of an earlier call of the session (before a reconnect)
        stored = await state.store.summary(record.session_id)
        lines = _matching(stored.get("transcript", []) if stored else [], wanted)
    if not lines:
        raise ApiError(404, "unknown_utterance", f"no final of utterance {wanted.utterance_id} in this call (yet)")
    if len({line.get("speaker", "") for line in lines}) > 1:
        raise ApiError(400, "speaker_required", f"both sides have an utterance {wanted.utterance_id}: "
                                                f"name its speaker ({', '.join(SPEAKERS)})")
    line = lines[0]
    return Utterance(
        speaker=str(line.get("speaker", "")),
        utterance_id=wanted.utterance_id,
        text=str(line.get("text", "")),
        head_labels=tuple(str(intent["name"]) for intent in line.get("intents", [])),
    )


def _matching(transcript: list[dict[str, Any]], wanted: CorrectionRequest) -> list[dict[str, Any]]:
    return [
        line for line in transcript
        if line.get("utterance_id") == wanted.utterance_id and (wanted.speaker is None or line.get("speaker") == wanted.speaker)
    ]


# The endpoint's request and answer in the OpenAPI document (server/openapi.py).
_LABELS = {"type": "array", "items": {"type": "string"}}
_CORRECTED: dict[str, Any] = {  # an utterance's labels after the agent's clicks, in the POST's answer and the read-back
    "speaker": {"type": "string"},
    "utterance_id": {"type": "integer"},
    "labels": {**_LABELS, "description": "the utterance's labels after every click so far"},
    "added": {**_LABELS, "description": "against what the head said"},
    "removed": _LABELS,
    "head_labels": {**_LABELS, "description": "what the head said (sorted in the read-back)"},
}
CORRECTION_SCHEMAS: dict[str, Any] = {
    "CorrectionRequest": {
        "type": "object",
        "required": ["utterance_id"],
        "properties": {
            "utterance_id": {"type": "integer", "minimum": 0, "maximum": MAX_UTTERANCE_ID},
            "speaker": {"type": "string", "enum": list(SPEAKERS), "description": "whose utterance"},
            "add": {**_LABELS, "maxItems": MAX_LABELS},
            "remove": {**_LABELS, "maxItems": MAX_LABELS},
        },
        "example": {"utterance_id": 3, "speaker": "customer", "add": ["complaint"], "remove": []},
    },
    "Corrected": {
        "type": "object",
        "required": ["session_id", "label_set", *_CORRECTED],
        "properties": {"session_id": {"type": "string"}, "label_set": {"type": "string"}, **_CORRECTED},
    },
    "StoredCorrection": {
        "type": "object",
        "required": [*_CORRECTED, "agent", "at"],
        "properties": {
            **_CORRECTED,
            "agent": {"type": "string", "description": "who corrected it; empty with auth none"},
            "at": {"type": "number", "description": "unix time of the last click"},
        },
    },
    "Corrections": {
        "type": "object",
        "required": ["session_id", "label_set", "corrections"],
        "properties": {
            "session_id": {"type": "string"},
            "label_set": {"type": "string"},
            "corrections": {"type": "array", "items": {"$ref": "#/components/schemas/StoredCorrection"}},
        },
    },
}

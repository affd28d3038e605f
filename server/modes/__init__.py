"""Call modes: what a call is for, chosen once, when its session is created.

    interview   the voice interviewer talks with the caller         modes/interview.py
    transcribe  the caller's transcript and pace, no agent          modes/transcribe.py
    assist      a call-center call on two labelled tracks, with     modes/assist.py
                the agent-assist overlay

Each mode is one object per call behind the `CallMode` interface
(modes/base.py); the call never asks which mode it has.

To add a mode: write a module here with its `CallMode` and its `ModeServices`,
then add a `ModeKind` to MODE_KINDS and its services to `load_modes`.
"""

from __future__ import annotations

from typing import Optional

from earshot.models.llm import LlmBackend
from earshot.server.encoder_service import EncoderService
from earshot.server.modes.assist import AssistServices
from earshot.server.modes.base import CallContext, CallMode, ModeKind, ModeServices
from earshot.server.modes.interview import InterviewServices
from earshot.server.modes.transcribe import TranscribeServices
from earshot.server.protocol import SPEAKERS
from earshot.server.settings import Settings
from earshot.server.store import SessionStore

__all__ = ["CallContext", "CallMode", "ModeKind", "ModeServices", "MODE_KINDS", "load_modes"]

MODE_KINDS: dict[str, ModeKind] = {
    kind.name: kind
    for kind in (
        ModeKind("interview", needs_role=True, intent_label_set="interview"),
        # Nobody takes a turn: the model ends utterances sooner, a pause never holds one open longer.
        ModeKind("transcribe", needs_role=True, hold_unfinished_turns=False),
        # Two people talk; Earshot takes no turn: finals come sooner, utterances are cut as before.
        ModeKind("assist", needs_role=False, speakers=SPEAKERS, intent_label_set="call_center", hold_unfinished_turns=False),
    )
}


def load_modes(
    settings: Settings, store: SessionStore, encoders: EncoderService, llm: Optional[LlmBackend]
) -> dict[str, ModeServices]:
    """Every mode's shared services, keyed like MODE_KINDS; a missing or invalid file stops the start."""
    return {
        "interview": InterviewServices.load(settings, store, encoders, llm),
        "transcribe": TranscribeServices(),
        "assist": AssistServices.load(settings, store, encoders, llm),
    }

"""An agent's correction of one utterance's intents, and how corrections are read and written as JSONL.

    overlay click (add or remove a label) --POST--> server stores a `Correction`
    earshot train-intent --with-feedback   <-- reads corrections, adds them to training

One record type for the whole loop: the server stores it, `earshot export`
and the trainer read it. `labels` is the utterance's whole label set after the
correction (what training learns from); `added` and `removed` say what the
agent changed, against what the head had said.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO


class CorrectionError(ValueError):
    """A correction record that cannot be read (its line, and what is wrong with it)."""


@dataclass(frozen=True)
class Correction:
    label_set: str  # interview | call_center
    text: str  # the utterance's words, as the final had them
    labels: tuple[str, ...]  # the labels the utterance carries after the correction, sorted
    added: tuple[str, ...]  # labels the agent added
    removed: tuple[str, ...]  # labels the agent removed
    session_id: str
    utterance_id: int
    agent: str  # who corrected it (the caller's subject; "" when auth is off)
    at: float  # unix time of the correction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Correction":
        try:
            return cls(
                label_set=str(data["label_set"]),
                text=str(data["text"]),
                labels=tuple(sorted(str(label) for label in data["labels"])),
                added=tuple(str(label) for label in data.get("added", ())),
                removed=tuple(str(label) for label in data.get("removed", ())),
                session_id=str(data["session_id"]),
                utterance_id=int(data["utterance_id"]),
                agent=str(data.get("agent", "")),
                at=float(data["at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorrectionError(f"not a correction: {exc!r}") from None


def write_jsonl(path: Path, corrections: Iterable[Correction]) -> int:
    """Write one correction per line to the file at `path`; how many were written."""
    with path.open("w", encoding="utf-8") as out:
        return write_lines(out, corrections)


def write_lines(out: TextIO, corrections: Iterable[Correction]) -> int:
    """Write one correction per line to an open text stream (standard output); how many were written."""
    count = 0
    for correction in corrections:
        out.write(json.dumps(correction.to_dict(), ensure_ascii=False) + "\n")
        count += 1
    return count


def read_jsonl(path: Path) -> list[Correction]:
    """Every correction in the file; a bad line stops the read with its number."""
    corrections = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            corrections.append(Correction.from_dict(json.loads(line)))
        except (json.JSONDecodeError, CorrectionError) as exc:
            raise CorrectionError(f"{path}:{number}: {exc}") from None
    return corrections

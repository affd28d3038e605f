"""Canned answers for the assist overlay, found by what the customer just said.

The knowledge file is a JSON list the support team edits: each entry has an
`id`, a `title`, the `answer` the agent can give, the `topics` (names from the
topic file) it belongs to, and `examples` of how customers ask for it. The
bundled `assist_data/knowledge.json` is a generic telecom and e-commerce desk.

Search embeds nothing per entry at query time: the title and every example
are embedded once (`embed`, before the first call), and an entry's score is
its best-matching row. The best row, not the mean: a customer phrasing close
to one example is strong evidence, and averaging it with the entry's other
examples would blur it. An entry of the call's current topic gets a small
bonus, which breaks near-ties the right way ("it's not working" on a call
about a router vs. about a phone).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from earshot.agents.assist_files import AssistFileError, Embed, list_field, read_entries, text_field

DEFAULT_PATH = Path(__file__).resolve().parent / "assist_data" / "knowledge.json"
TOPIC_BONUS = 0.05


class KnowledgeError(AssistFileError):
    """The knowledge file is missing or malformed."""


@dataclass(frozen=True)
class KnowledgeEntry:
    id: str
    title: str
    answer: str
    topics: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class KnowledgeHit:
    entry: KnowledgeEntry
    score: float  # cosine similarity of the query to the entry's best row, plus any topic bonus


class KnowledgeBase:
    """The entries of one knowledge file; shared by every call (read-only once embedded)."""

    def __init__(self, entries: tuple[KnowledgeEntry, ...], path: Path) -> None:
        self.entries = entries
        self.path = path
        self._rows: Optional[np.ndarray] = None  # unit embeddings: each entry's title, then its examples
        # Where each entry's rows start, for a per-entry max with np.maximum.reduceat.
        self._starts = np.cumsum([0] + [1 + len(e.examples) for e in entries[:-1]])

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "KnowledgeBase":
        """Read and check `path` (None = the bundled file); KnowledgeError says what is wrong where."""
        path = path or DEFAULT_PATH
        entries = []
        seen: set[str] = set()
        for index, raw in enumerate(read_entries(path, KnowledgeError)):
            entry = KnowledgeEntry(
                id=text_field(path, index, raw, "id", KnowledgeError),
                title=text_field(path, index, raw, "title", KnowledgeError),
                answer=text_field(path, index, raw, "answer", KnowledgeError),
                topics=list_field(path, index, raw, "topics", KnowledgeError, required=False),
                examples=list_field(path, index, raw, "examples", KnowledgeError),
            )
            if entry.id in seen:
                raise KnowledgeError(f"{path}: entry {index + 1}: id {entry.id!r} is used twice")
            seen.add(entry.id)
            entries.append(entry)
        return cls(tuple(entries), path)

    @property
    def embedded(self) -> bool:
        return self._rows is not None

    async def embed(self, embed: Embed) -> None:
        """Embed every title and example once; later calls do nothing."""
        if self._rows is not None:
            return
        texts = [text for entry in self.entries for text in (entry.title, *entry.examples)]
        rows = np.asarray(await embed(texts), dtype=np.float32)
        if rows.shape[0] != len(texts):
            raise ValueError(f"embed returned {rows.shape[0]} rows for {len(texts)} texts")
        self._rows = rows

    def get(self, entry_id: str) -> KnowledgeEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def search(self, query: np.ndarray, k: int = 3, topic: Optional[str] = None) -> list[KnowledgeHit]:
        """The `k` best entries for a unit query vector, best first."""
        if self._rows is None:
            raise RuntimeError("KnowledgeBase.search before embed(): embed the entries first")
        similarities = self._rows @ np.asarray(query, dtype=np.float32).reshape(-1)
        scores = np.maximum.reduceat(similarities, self._starts)
        if topic:
            scores = scores + np.array([TOPIC_BONUS if topic in e.topics else 0.0 for e in self.entries])
        best = np.argsort(-scores, kind="stable")[:k]
        return [KnowledgeHit(self.entries[i], round(float(scores[i]), 3)) for i in best]

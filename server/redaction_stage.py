"""Redaction on the live path: what Whisper heard, with its personal data replaced by tags, before anyone else sees it.

    AsrFinal text + words --Redactor (worker thread)--> redacted text, redacted words (+ the raw text, when allowed)
    AsrPartial committed + tentative --Redactor--> redacted committed, redacted tentative

The pipeline (server/pipeline.py) runs every final and partial through here
before it becomes an event, so the final that is stored, the text the intent
head and the call's agents (and through them the LLM) read, and the logs all
carry tags (`[CARD]`, `[PHONE]`, ...). Only the live view may show what was
said: with `show_raw` (the assist overlay, `assist_overlay_raw`) a final also
carries `raw_text`, which the outbox never stores (protocol.Final.stored), and
partials go out unredacted.

The redactor is regular expressions and word lists (models/redaction/), a
few milliseconds a line; it runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from earshot.models.asr import Word
from earshot.models.redaction.kinds import TAGS


class Span(Protocol):
    kind: str
    start: int
    end: int


class Redacted(Protocol):
    text: str
    spans: Sequence[Span]


class Redacts(Protocol):
    def redact(self, text: str, kinds: frozenset[str]) -> Redacted: ...


@dataclass(frozen=True)
class RedactionOptions:
    """What a call's mode redacts (server/api.py builds one per mode from the settings)."""

    redactor: Redacts
    kinds: frozenset[str]
    show_raw: bool = False  # the live view may show what was said; what is stored never does


@dataclass(frozen=True)
class RedactedFinal:
    text: str
    words: tuple[Word, ...]
    raw_text: Optional[str]  # what was said, for the live view only; None when not allowed or nothing was redacted
    redact_s: float  # time in the redactor (0 when nothing is redacted)


class TranscriptRedaction:
    """One pipeline's redaction: None options (or no kinds) pass everything through untouched."""

    def __init__(self, options: Optional[RedactionOptions]) -> None:
        self._options = options if options is not None and options.kinds else None

    async def final(self, text: str, words: Sequence[Word]) -> RedactedFinal:
        if self._options is None:
            return RedactedFinal(text, tuple(words), None, 0.0)
        started = time.perf_counter()
        redacted = await asyncio.to_thread(self._options.redactor.redact, text, self._options.kinds)
        elapsed = round(time.perf_counter() - started, 4)
        if not redacted.spans:
            return RedactedFinal(text, tuple(words), None, elapsed)
        raw = text if self._options.show_raw else None
        return RedactedFinal(redacted.text, redact_words(text, words, redacted.spans), raw, elapsed)

    async def partial(self, committed: str, tentative: str) -> tuple[str, str]:
        if self._options is None or self._options.show_raw:
            return committed, tentative
        joined = f"{committed} {tentative}" if committed and tentative else committed or tentative
        redacted = await asyncio.to_thread(self._options.redactor.redact, joined, self._options.kinds)
        if not redacted.spans:
            return committed, tentative
        cut = len(committed)  # committed is joined[:cut]; tentative starts after the joining space
        head = apply_spans(joined[:cut], [(s.kind, s.start, min(s.end, cut)) for s in redacted.spans if s.start < cut])
        # A span that began in the committed words left its tag there: its rest in the tentative ones just goes.
        tail_spans = [("" if s.start < cut else s.kind, max(s.start, cut) - cut, s.end - cut) for s in redacted.spans if s.end > cut]
        tail = joined[cut:]
        return head, apply_spans(tail, tail_spans).strip()


def apply_spans(text: str, spans: Sequence[tuple[str, int, int]]) -> str:
    """`text` with each (kind, start, end) replaced by its kind's tag (an empty kind: by nothing)."""
    out, at = [], 0
    for kind, start, end in sorted(spans, key=lambda span: span[1]):
        if end <= at:
            continue
        out.append(text[at:max(start, at)])
        out.append(TAGS.get(kind, ""))
        at = end
    out.append(text[at:])
    return "".join(out)


def redact_words(text: str, words: Sequence[Word], spans: Sequence[Span]) -> tuple[Word, ...]:
    """The final's timed words with every word a span touches replaced: a run of such words becomes one tag word.

    Each word is found in `text` in order (Whisper's words are the text's
    words, stripped). A word that cannot be placed is
    dropped rather than risk keeping what a span covered.
    """
    out: list[Word] = []
    cursor = 0
    previous_span: Optional[Span] = None
    for word in words:
        token = word.text.strip()
        found = text.find(token, cursor) if token else -1
        if found < 0:
            continue
        start, end = found, found + len(token)
        cursor = end
        span = next((s for s in spans if s.start < end and start < s.end), None)
        if span is None:
            out.append(word)
            previous_span = None
        elif span is previous_span:  # the same span goes on: the tag word now ends here
            last = out[-1]
            out[-1] = Word(last.text, last.start, word.end, min(last.probability, word.probability))
        else:
            out.append(Word(TAGS[span.kind], word.start, word.end, word.probability))
            previous_span = span
    return tuple(out)

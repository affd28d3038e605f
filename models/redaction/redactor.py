"""The redactor: a transcript line in, the line with each span of personal data replaced by its tag out.

    redactor = Redactor.load()          # once per process (load time below)
    redactor.redact("my card is four one one one ...", parse_kinds("all"))
    -> Redaction(text="my card is [CARD]", spans=(PiiSpan("card", 11, 80),))

`redact` is pure: any number of threads may call one Redactor at once (the
only shared state Presidio writes, spaCy's vocabulary, is behind a lock in
recognizers.py). Spans are offsets into the original line. Where two findings
overlap they merge into one span over both, of the kind scored higher (the
longer one on a tie), so no part of either is left showing. Every recogniser
runs whatever `kinds` asks for, and the kinds not asked for are dropped after
merging: an account number is never tagged [PHONE] because only phones were asked.

Load time, measured on this 2-core machine: 5.5 s in a cold process, most of it
torch and transformers, which Presidio's package imports whenever they are
installed; 1.2 s where they are already loaded (the server's sentence encoder
loads them). Memory: about 200 MB more (spaCy, libphonenumber's metadata, the
name lists, Presidio's modules). Redacting a final then takes 0.6 ms (p50) to
1.1 ms (p95); bench/redaction_bench.py measures it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from earshot.models.redaction.kinds import KINDS, TAGS
from earshot.models.redaction.spoken import normalise

log = logging.getLogger(__name__)

# One line with every kind in it: loading runs it once, so no thread pays for lazy set-up later.
WARM_UP = ("My name is Mark Rivera, card four one one one one one one one one one one one one one one one, "
           "phone 415 555 0132, mark dot rivera at gmail dot com, SSN 536-22-8147, IBAN GB82 WEST 1234 5698 7654 32, "
           "order number 7734 19, born May 3rd, 1984, I live at 221 Baker Street.")


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # one of KINDS
    start: int  # offsets into the original text
    end: int


@dataclass(frozen=True)
class Redaction:
    text: str  # the line with each span replaced by its tag
    spans: tuple[PiiSpan, ...]  # into the original line, in order


@dataclass(frozen=True)
class _Finding:
    kind: str
    start: int
    end: int
    score: float


class Redactor:
    def __init__(self, analyzer, entity_kinds: dict[str, str]) -> None:
        self._analyzer = analyzer  # presidio_analyzer.AnalyzerEngine, from recognizers.build_analyzer()
        self._entity_kinds = entity_kinds  # its entity names -> our kinds
        self._entities = list(entity_kinds)

    @classmethod
    def load(cls) -> Redactor:
        started = time.perf_counter()
        from earshot.models.redaction.recognizers import ENTITY_KINDS, build_analyzer  # imports Presidio (seconds)

        redactor = cls(build_analyzer(), ENTITY_KINDS)
        redactor.redact(WARM_UP, frozenset(KINDS))
        log.info("redactor loaded in %.1f s", time.perf_counter() - started)
        return redactor

    def find(self, text: str, kinds: frozenset[str]) -> tuple[PiiSpan, ...]:
        """The spans of `kinds` in `text`, merged, in order."""
        if not kinds or not text.strip():
            return ()
        normalised = normalise(text)
        findings = []
        for result in self._analyzer.analyze(normalised.text, language="en", entities=self._entities):
            start, end = normalised.span(result.start, result.end)
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1] in " \t,;:":
                end -= 1
            if end > start:
                findings.append(_Finding(self._entity_kinds[result.entity_type], start, end, result.score))
        return tuple(PiiSpan(f.kind, f.start, f.end) for f in merge(findings) if f.kind in kinds)

    def redact(self, text: str, kinds: frozenset[str]) -> Redaction:
        spans = self.find(text, kinds)
        if not spans:
            return Redaction(text, ())
        pieces, cursor = [], 0
        for span in spans:
            pieces.append(text[cursor:span.start])
            pieces.append(TAGS[span.kind])
            cursor = span.end
        pieces.append(text[cursor:])
        return Redaction("".join(pieces), spans)


def merge(findings: list[_Finding]) -> list[_Finding]:
    """Overlapping findings as one span over all of them, of the kind scored highest (then the longest)."""
    merged: list[_Finding] = []
    group: list[_Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if group and finding.start >= max(f.end for f in group):
            merged.append(_merged(group))
            group = []
        group.append(finding)
    if group:
        merged.append(_merged(group))
    return merged


def _merged(group: list[_Finding]) -> _Finding:
    best = max(group, key=lambda f: (f.score, f.end - f.start))
    return _Finding(best.kind, min(f.start for f in group), max(f.end for f in group), best.score)

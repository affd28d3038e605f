"""Sentences of a text: one rule, for a whole transcript or for text that streams in.

A sentence ends at a run of ".", "!" or "?", maybe closing quotes or
brackets, then whitespace. A full stop after an abbreviation Whisper writes
mid-sentence ("e.g.", "Mr.") ends nothing. Whatever follows the last end is a
sentence too, finished or not.

`split_sentences` splits a whole text: the report's answers. `SentenceStream`
applies the same rule to text that arrives in pieces: a sentence comes out as
soon as the whitespace after its end arrives, so "3." waits to see whether it
becomes "3.5". Its `ends_at_once` names characters that end a sentence without
waiting for what follows: the follow-up guard passes "?", since it speaks the
question the moment it is complete and uses nothing after it.
"""

from __future__ import annotations

import re

# Whisper writes "e.g." and "Mr." mid-sentence; a full stop after these ends no sentence.
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|vs|mr|mrs|dr|approx)\.$", re.IGNORECASE)
_END = r"[.!?]+[\"')\]]*\s+"
_END_RE = re.compile(_END)


def split_sentences(text: str) -> list[str]:
    """Sentences of a transcript, split at ". ", "? " and "! " except after abbreviations."""
    sentences, rest = _cut(text, _END_RE)
    rest = rest.strip()
    return [*sentences, rest] if rest else sentences


class SentenceStream:
    """Feed text as it arrives; get back each sentence once it is certain to have ended."""

    def __init__(self, ends_at_once: str = "") -> None:
        # The first of those characters in a run of end marks ends the sentence ("Why?!" is "Why?").
        self._end = re.compile(rf"[.!?]*?[{re.escape(ends_at_once)}]|{_END}") if ends_at_once else _END_RE
        self.pending = ""  # the start of a sentence whose end has not arrived yet

    def feed(self, delta: str) -> list[str]:
        sentences, self.pending = _cut(self.pending + delta, self._end)
        return sentences

    def flush(self) -> list[str]:
        """The end of the stream: what is pending, finished or not, as the last sentence."""
        rest, self.pending = self.pending.strip(), ""
        return [rest] if rest else []


def _cut(text: str, end: re.Pattern[str]) -> tuple[list[str], str]:
    """The sentences that have ended in `text`, stripped, and the rest after them."""
    sentences: list[str] = []
    start = 0
    for m in end.finditer(text):
        if _ABBREVIATIONS.search(text[start : m.start() + 1]):
            continue
        candidate = text[start : m.end()].strip()
        if candidate:
            sentences.append(candidate)
        start = m.end()
    return sentences, text[start:]

"""The LLM's grammar review for the report: the prompt, and a strict reading of the reply.

A capable LLM, when the server has one, is asked for one line per fix in a
fixed format; whatever it says is checked before it is believed (see
`parse_llm_corrections`).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from earshot.agents.grammar import Correction, changed_range
from earshot.models.llm import ChatMessage
from earshot.models.text import normalize_text, word_errors

LLM_SEPARATOR = "||"
# Sentences per request: enough context for the model, short enough that a small
# max_tokens covers every correction it could make.
LLM_BATCH = 20
LLM_TOKENS_PER_SENTENCE = 60
# A "correction" that rewrites more than this share of the words is a rewrite:
# it changes what the candidate said, not how.
MAX_EDIT_SHARE = 0.4

LLM_SYSTEM_PROMPT = (
    "You check the grammar of a job candidate's spoken answers, transcribed by speech recognition. "
    "Fix only clear grammar mistakes: agreement, verb forms, articles, wrong word forms. "
    "Do not fix punctuation, capitalisation, style, word choice, filler words (um, uh, like, you know) "
    "or informal but correct speech, and never change the meaning.\n"
    "Output one line per sentence that has a mistake, exactly in this form:\n"
    f"NUMBER {LLM_SEPARATOR} CORRECTED SENTENCE {LLM_SEPARATOR} SHORT REASON\n"
    "NUMBER is the sentence's number from the list. Output nothing else. "
    "If no sentence has a mistake, output only: NONE"
)


async def llm_grammar_review(sentences: Sequence[str], llm: Any) -> list[Correction]:
    """Ask `llm` (anything with the models.llm `stream_chat` shape) for grammar fixes.

    Sentences go in batches of LLM_BATCH; every line of the reply is checked
    and dropped unless it names a sentence we sent, changes at least one word,
    and changes no more than MAX_EDIT_SHARE of them. Errors from the backend
    (models.llm.LlmError) propagate: the caller builds the report without LLM
    corrections then, and bounds the wait with its own timeout.
    """
    sentences = [s.strip() for s in sentences if s and s.strip()]
    corrections: list[Correction] = []
    seen: set[tuple[str, str]] = set()
    for offset in range(0, len(sentences), LLM_BATCH):
        batch = sentences[offset : offset + LLM_BATCH]
        numbered = "\n".join(f"{n}. {s}" for n, s in enumerate(batch, start=1))
        messages = [ChatMessage("system", LLM_SYSTEM_PROMPT), ChatMessage("user", numbered)]
        parts: list[str] = []
        async for delta in llm.stream_chat(
            messages, max_tokens=40 + LLM_TOKENS_PER_SENTENCE * len(batch), temperature=0.0
        ):
            parts.append(delta)
        for correction in parse_llm_corrections("".join(parts), batch):
            key = (correction.original, correction.suggestion)
            if key not in seen:
                seen.add(key)
                corrections.append(correction)
    return corrections


_LINE_PREFIX = re.compile(r"^\s*(?:[-*•]\s*)?")
_NUMBER = re.compile(r"^\(?\s*(?:sentence\s*)?#?(\d+)\s*[.):]?\s*$", re.IGNORECASE)


def parse_llm_corrections(reply: str, sentences: Sequence[str]) -> list[Correction]:
    """Corrections from a reply in the NUMBER || CORRECTED || WHY format; anything else is ignored."""
    by_text = {normalize_text(s): s for s in sentences}
    corrections: list[Correction] = []
    for line in reply.splitlines():
        fields = [f.strip().strip('"').strip() for f in _LINE_PREFIX.sub("", line).split(LLM_SEPARATOR)]
        if len(fields) != 3 or not fields[1]:
            continue
        ref, suggestion, why = fields
        number = _NUMBER.match(ref)
        if number:
            index = int(number.group(1)) - 1
            original = sentences[index] if 0 <= index < len(sentences) else None
        else:
            original = by_text.get(normalize_text(ref))  # some models echo the sentence instead
        if original is None:
            continue
        edits, length = word_errors(original, suggestion)
        if edits == 0 or edits > MAX_EDIT_SHARE * max(length, 1):
            continue  # only punctuation or case changed, or a rewrite rather than a fix
        corrections.append(
            Correction(
                original=original,
                suggestion=suggestion,
                reason=why or "Suggested by the language model.",
                rule="llm",
                source="llm",
                span=_changed_span(original, suggestion),
            )
        )
    return corrections


def _changed_span(original: str, suggestion: str) -> str:
    found = changed_range(original, suggestion)
    return " ".join(original.split()[found[0] : found[1]]) if found else ""

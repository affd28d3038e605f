"""Word error rate, computed the way published ASR results compute it.

Both sides go through OpenAI's English text normaliser (the `whisper-normalizer`
package: the normaliser the Whisper paper scores with), and jiwer counts the
word edits. Earshot's numbers then compare with published ones. The product's
own normaliser (models/text.py) stays what commands and pace use.

The normaliser is used as published, quirks included, so the rates stay
comparable: it leaves a trailing "..." as a lone "." word (one insertion on a
hypothesis that ends in an ellipsis, as Whisper's cut-off text can).

A corpus WER is total edits over total reference words (not a mean of per-clip
rates), so long clips weigh what they hold.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any, Sequence

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

_NORMALIZE = EnglishTextNormalizer()


def normalize(text: str) -> str:
    return " ".join(_NORMALIZE(text).split())


# The normaliser drops whatever stands in brackets or parentheses: in Whisper's output those are
# annotations, not speech. In the corpus references they are words the reader says ("dated
# (which also was printed at Mainz ...)"), so a reference's brackets go before it is normalised.
# Measured on the ASR bench's 34 files: without this the same transcripts scored 5.64 % WER
# (LJ001-0024 alone lost 11 reference words); with it 3.26 %, against 3.43 % under the
# project's own normaliser.
_BRACKETS = re.compile(r"[\[\](){}]")


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after normalisation; a reference's bracketed words count as spoken."""
    ref, hyp = normalize(_BRACKETS.sub(" ", reference)), normalize(hypothesis)
    if not ref:
        return len(hyp.split()), 0
    if not hyp:
        return len(ref.split()), len(ref.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate: all edits over all reference words."""
    counts = [word_errors(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True)]
    return sum(e for e, _ in counts) / max(1, sum(n for _, n in counts))


def method() -> dict[str, Any]:
    """What produced a WER, for results files: rates are comparable only under the same normaliser and counting."""
    return {
        "normalizer": "whisper_normalizer.english.EnglishTextNormalizer",
        "normalizer_package": f"whisper-normalizer {importlib.metadata.version('whisper-normalizer')}",
        "wer_tool": f"jiwer {importlib.metadata.version('jiwer')}",
        "corpus_wer": "total edits / total reference words",
        "references": "brackets removed before normalising (their words are spoken)",
    }

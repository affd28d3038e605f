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
from typing import Any, Sequence

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

_NORMALIZE = EnglishTextNormalizer()


def normalize(text: str) -> str:
    return " ".join(_NORMALIZE(text).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after normalisation."""
    ref, hyp = normalize(reference), normalize(hypothesis)
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
    }

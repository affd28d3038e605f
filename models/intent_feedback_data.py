"""Agents' intent corrections as training data (`earshot train-intent --with-feedback`).

    list[Correction] (from a JSONL file here; from the feedback store once merged)
        --merge_feedback--> training examples (weighted) + a held-out split of the corrections

The rules, in order:

1. Only corrections of the label set being trained count; a label the set does
   not have is an error that names the correction (never silently dropped).
2. Deduplicated by text (as Whisper would write it: lower case, no
   punctuation): the latest correction of a text wins.
3. A correction whose text is a test-split example is never trained on (the
   test split stays unchanged and unseen); it is evaluated with the held-out
   corrections. Of the rest, a fixed share chosen by a hash of the text (not
   by looking at results) is held out too, for evaluation only.
4. The others go to train. One whose text is already a train or validation
   example replaces that example's labels (the agent's word is newer than the
   data set's); a new text becomes a new example, weighted `weight` in the loss.

This module takes the corrections, not where they come from, so the file
reader and the Redis store feed the same function.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Sequence

from earshot.models.intent_dataset import IntentDataset, LabelledUtterance
from earshot.models.intent_dataset_build import asr_text
from earshot.models.intent_feedback import Correction, CorrectionError

HELD_OUT_SHARE = 0.2  # of the corrections not already in the test split
DEFAULT_WEIGHT = 2.0


@dataclass(frozen=True)
class FeedbackData:
    train: tuple[LabelledUtterance, ...]  # the data set's train examples, relabelled where corrected, plus new ones
    validation: tuple[LabelledUtterance, ...]  # likewise
    weights: dict[str, float]  # example id -> loss weight (1.0 when absent)
    held_out: tuple[LabelledUtterance, ...]  # corrections kept for evaluation only
    counts: dict[str, int]  # what happened to the corrections, for the evaluation file


def text_key(text: str) -> str:
    """How two texts are compared: as an unpunctuated lower-case transcript."""
    return asr_text(text, spell_numbers=False)


def check_corrections(corrections: Sequence[Correction], data: IntentDataset) -> list[Correction]:
    """This label set's corrections, each label checked; an unknown one raises CorrectionError naming it."""
    mine = []
    for correction in corrections:
        if correction.label_set != data.label_set:
            continue
        unknown = [label for label in correction.labels if label not in data.labels]
        where = f"correction of session {correction.session_id!r} utterance {correction.utterance_id} ({correction.text[:40]!r})"
        if unknown:
            raise CorrectionError(
                f"{where}: unknown {data.label_set} label(s) {', '.join(map(repr, unknown))}; known: {', '.join(data.labels)}"
            )
        if not correction.text.strip() or not text_key(correction.text):
            raise CorrectionError(f"{where}: empty text")
        mine.append(correction)
    return mine


def latest_per_text(corrections: Sequence[Correction]) -> list[Correction]:
    """One correction per text: the latest (by `at`; the later one in the list on a tie)."""
    latest: dict[str, Correction] = {}
    for correction in corrections:
        key = text_key(correction.text)
        if key not in latest or correction.at >= latest[key].at:
            latest[key] = correction
    return sorted(latest.values(), key=lambda c: (c.at, text_key(c.text)))


def held_out(key: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether a correction's text is kept for evaluation: a fixed hash of the text, so the choice is stable."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def merge_feedback(
    data: IntentDataset, corrections: Sequence[Correction], weight: float = DEFAULT_WEIGHT, share: float = HELD_OUT_SHARE
) -> FeedbackData:
    if weight <= 0:
        raise ValueError(f"the feedback weight must be positive, got {weight}")
    chosen = latest_per_text(check_corrections(corrections, data))
    test_texts = {text_key(u.text) for u in data.split("test")}
    seen = {text_key(u.text) for u in data.examples if u.split != "test"}
    relabel: dict[str, tuple[str, ...]] = {}
    added: list[LabelledUtterance] = []
    evaluation: list[LabelledUtterance] = []
    counts = {"corrections": len(corrections), "this_label_set": 0, "after_dedup": len(chosen), "in_test_split": 0,
              "held_out": 0, "relabelled_examples": 0, "added": 0}
    counts["this_label_set"] = sum(c.label_set == data.label_set for c in corrections)
    for number, correction in enumerate(chosen, start=1):
        key = text_key(correction.text)
        labels = tuple(label for label in data.labels if label in correction.labels)  # label-set order
        example = LabelledUtterance(
            id=f"feedback-{data.label_set}-{number:05d}", text=correction.text, labels=labels, style="asr",
            group=f"feedback-{hashlib.sha256(key.encode()).hexdigest()[:12]}", split="train",
        )
        if key in test_texts:
            counts["in_test_split"] += 1
            evaluation.append(example)
        elif held_out(key, share):
            evaluation.append(example)
        elif key in seen:
            relabel[key] = labels
        else:
            added.append(example)
    counts["held_out"] = len(evaluation)
    counts["added"] = len(added)

    def corrected(examples: list[LabelledUtterance]) -> tuple[LabelledUtterance, ...]:
        out = []
        for u in examples:
            labels = relabel.get(text_key(u.text))
            if labels is not None and labels != u.labels:
                counts["relabelled_examples"] += 1
                u = replace(u, labels=labels)
            out.append(u)
        return tuple(out)

    train = corrected(data.split("train")) + tuple(added)
    validation = corrected(data.split("validation"))
    weights = {u.id: weight for u in added}
    weights.update({u.id: weight for u in train + validation if text_key(u.text) in relabel})
    return FeedbackData(train, validation, weights, tuple(evaluation), counts)

"""Scoring the intent heads: per-label thresholds, micro/macro F1 and the commonest confusions."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from earshot.models.intent import best_plus

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
CONFUSION_PAIRS_SHOWN = 10


def tune_thresholds(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per label, the threshold with the best F1 on these examples (ties: the one nearest 0.5)."""
    chosen = []
    for column in range(targets.shape[1]):
        truth = targets[:, column] > 0.5
        best = max(
            THRESHOLD_GRID,
            key=lambda t: (round(_f1(scores[:, column] >= t, truth), 6), -abs(t - 0.5)),
        )
        chosen.append(best)
    return np.asarray(chosen, dtype=np.float32)


def tune_best_plus(scores: np.ndarray, targets: np.ndarray) -> float:
    """The one level another label must reach beside the best one (IntentHead "best_plus"): the best
    micro-F1 on these examples (ties: the one nearest 0.5)."""
    truth = targets > 0.5
    return float(max(THRESHOLD_GRID, key=lambda t: (round(_f1(best_plus(scores, t), truth), 6), -abs(t - 0.5))))


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(labels: Sequence[str], predicted: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Micro/macro F1, per-label precision/recall/F1, exact matches and the commonest confusions."""
    truth = targets > 0.5
    per_label: dict[str, dict[str, float]] = {}
    for column, name in enumerate(labels):
        p, t = predicted[:, column], truth[:, column]
        tp, fp, fn = int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t))
        per_label[name] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": round(_f1(p, t), 4),
            "support": int(t.sum()),
        }
    tp, fp, fn = int(np.sum(predicted & truth)), int(np.sum(predicted & ~truth)), int(np.sum(~predicted & truth))
    confusions: Counter[tuple[str, str]] = Counter()
    for row_predicted, row_truth in zip(predicted, truth):
        # Every wrongly predicted label is charged to each label the utterance really has.
        for wrong in np.flatnonzero(row_predicted & ~row_truth):
            for right in np.flatnonzero(row_truth):
                confusions[(labels[right], labels[wrong])] += 1
    return {
        "examples": int(len(targets)),
        "micro_precision": _ratio(tp, tp + fp),
        "micro_recall": _ratio(tp, tp + fn),
        "micro_f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0,
        "macro_f1": round(float(np.mean([m["f1"] for m in per_label.values()])), 4),
        "exact_match": round(float(np.mean(np.all(predicted == truth, axis=1))), 4),
        "per_label": per_label,
        "confusion_pairs": [
            {"true": true, "predicted": wrong, "count": count}
            for (true, wrong), count in confusions.most_common(CONFUSION_PAIRS_SHOWN)
        ],
    }


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0

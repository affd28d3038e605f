"""Scoring the intent heads: per-label thresholds, micro/macro F1 and the commonest confusions."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from earshot.models.intent import IntentClassifier, IntentHead, best_plus

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
CONFUSION_PAIRS_SHOWN = 10
SERVED_WARM_UP = 10  # utterances classified untimed first (the graph's first runs allocate)
SERVED_THREADS = 1  # as the server runs its encoder
SERVED_TARGET_P95_MS = 10.0  # the speed the heads aim for: one utterance, encoder and head, one thread


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


@dataclass(frozen=True)
class ServedRun:
    """A head as a server runs it over some utterances: one at a time, on its encoder's backend and threads."""

    backend: str  # "onnx" or "torch"
    micro_f1: float  # on this backend's features (an int8 graph's differ from torch's, which training reads)
    times_s: tuple[float, ...]  # per utterance: encoder and head

    def summary(self) -> dict[str, Any]:
        ms = np.asarray(self.times_s) * 1000
        return {
            "backend": self.backend,
            "utterances": len(self.times_s),
            "test_micro_f1": self.micro_f1,
            "inference_ms": {name: round(float(np.percentile(ms, q)), 2) for name, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "target_p95_ms": SERVED_TARGET_P95_MS,
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
        }


def served_run(classifier: IntentClassifier, label_set: str, texts: Sequence[str], targets: np.ndarray) -> ServedRun:
    """Classify `texts` one by one as the server does (after SERVED_WARM_UP untimed ones) and score the labels said."""
    labels = classifier.heads[label_set].labels
    for text in texts[:SERVED_WARM_UP]:
        classifier.classify(text, label_set)
    times, said = [], np.zeros((len(texts), len(labels)), dtype=bool)
    for row, text in enumerate(texts):
        started = time.perf_counter()
        prediction = classifier.classify(text, label_set)
        times.append(time.perf_counter() - started)
        chosen = {label.name for label in prediction.labels}
        said[row] = [name in chosen for name in labels]
    return ServedRun(classifier.encoder.backend, evaluate(labels, said, targets)["micro_f1"], tuple(times))


def served_evaluation(encoder_dir: str, head: IntentHead, texts: Sequence[str], targets: np.ndarray) -> dict[str, Any]:
    """A trained head on its encoder as a server loads it (ONNX Runtime where it can, one thread), timed here.

    Torch's process-wide thread count is put back afterwards (an encoder that
    stays on torch sets it to one), so training that follows keeps its threads.
    """
    from earshot.models.encoder import SentenceEncoder

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else 0
    try:
        encoder = SentenceEncoder.load(encoder_dir, threads=SERVED_THREADS, backend="onnx")
        run = served_run(IntentClassifier(encoder, {head.label_set: head}), head.label_set, texts, targets)
        return {**run.summary(), "threads": SERVED_THREADS}
    finally:
        if torch is not None:
            torch.set_num_threads(threads)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

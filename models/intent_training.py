"""Training and evaluating the intent heads (`earshot train-intent`).

Two ways to train, both on the project's data set (`models/intent_data/`):

- frozen (default): the encoder embeds every utterance once; only the linear
  head learns (full-batch Adam on binary cross-entropy). Seconds on a CPU, and
  the result is a few tens of KB that ship in the repository.
- full fine-tuning (`--full-finetune`): the encoder learns too, with mean
  pooling under the head. Minutes on a CPU; the tuned encoder is written next
  to the head, which names it.

Thresholds: each label gets the threshold that maximises its F1 on held-out
scores. For the frozen head those are out-of-fold scores: five heads, each
trained on four fifths of train+validation (split by group, so an utterance's
spoken variants stay together), score the fifth they did not see. The head
that ships is then trained on all of train+validation. With ~100 validation
utterances a per-label threshold tuned on validation alone overfits (test
micro-F1 0.835 that way, 0.855 this way on the interview set). Fine-tuning
is too slow for five folds: it trains on train and tunes on validation.
The test split is scored once, at the end. Everything is seeded, so a run
reproduces the committed metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from earshot.models.encoder import SentenceEncoder, layer_means_tensor
from earshot.models.intent import BUNDLED_ENCODER, HEADS_DIR, LABEL_SETS, IntentHead, head_path, label_scores
from earshot.models.intent_dataset import DATA_DIR, IntentDataset, load_dataset

log = logging.getLogger(__name__)

FROZEN_EPOCHS = 500  # full-batch steps
FROZEN_LEARNING_RATE = 0.02
FROZEN_WEIGHT_DECAY = 1e-3
FINETUNE_EPOCHS = 6
FINETUNE_BATCH = 16
FINETUNE_ENCODER_LR = 5e-5
FINETUNE_HEAD_LR = 2e-3
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
CONFUSION_PAIRS_SHOWN = 10
THRESHOLD_FOLDS = 5


@dataclass(frozen=True)
class TrainConfig:
    label_set: str
    encoder_dir: str = ""  # "" = the bundled all-MiniLM-L6-v2
    full_finetune: bool = False
    epochs: int = 0  # 0 = the default of the chosen way
    seed: int = 13
    data_dir: Optional[Path] = None
    out_dir: Path = HEADS_DIR


@dataclass(frozen=True)
class TrainResult:
    head: IntentHead
    evaluation: dict[str, Any]
    head_file: Path
    evaluation_file: Path


def evaluation_path(label_set: str, out_dir: Path = HEADS_DIR) -> Path:
    return out_dir / f"{label_set}.eval.json"


def train_intent(config: TrainConfig) -> TrainResult:
    import torch

    if config.label_set not in LABEL_SETS:
        raise ValueError(f"unknown label set {config.label_set!r}; known: {', '.join(LABEL_SETS)}")
    data = load_dataset(config.label_set, config.data_dir)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    encoder = SentenceEncoder.load(config.encoder_dir, threads=0)
    train, validation, test = (data.split(name) for name in ("train", "validation", "test"))

    if config.full_finetune:
        epochs = config.epochs or FINETUNE_EPOCHS
        weight, bias = _finetune(encoder, data, train, epochs, config.seed)
        encoder_name = f"{config.label_set}-encoder"
        encoder.save(config.out_dir / encoder_name)  # the tuned encoder the head needs
        recorded_encoder = encoder_name
        held_out_scores = label_scores(encoder.layer_means([u.text for u in validation]), weight, bias)
        held_out_targets = data.targets(validation)
        held_out = "validation"
    else:
        epochs = config.epochs or FROZEN_EPOCHS
        seen = train + validation
        features, targets = encoder.layer_means([u.text for u in seen]), data.targets(seen)
        held_out_scores = _out_of_fold_scores(features, targets, [u.group for u in seen], epochs, config.seed)
        held_out_targets = targets
        held_out = f"train+validation, {THRESHOLD_FOLDS}-fold out-of-fold"
        weight, bias = _train_frozen_head(features, targets, epochs, config.seed)
        recorded_encoder = config.encoder_dir or BUNDLED_ENCODER

    thresholds = tune_thresholds(held_out_scores, held_out_targets)
    head = IntentHead(
        config.label_set,
        data.labels,
        weight,
        bias,
        thresholds,
        recorded_encoder,
        training={
            "mode": "full_finetune" if config.full_finetune else "frozen",
            "encoder": encoder.path.name if not config.encoder_dir else config.encoder_dir,
            "epochs": epochs,
            "seed": config.seed,
            "train_examples": len(train) if config.full_finetune else len(train) + len(validation),
            "thresholds_from": held_out,
            "data_sha256": _data_fingerprint(config.label_set, config.data_dir),
        },
    )
    test_scores = head.scores(encoder.layer_means([u.text for u in test]))
    evaluation = {
        "label_set": config.label_set,
        "training": head.training,
        "thresholds": {name: round(float(t), 4) for name, t in zip(head.labels, head.thresholds)},
        "held_out": evaluate(head.labels, head.decide(held_out_scores), held_out_targets),
        "test": evaluate(head.labels, head.decide(test_scores), data.targets(test)),
    }
    head_file = head_path(config.label_set, config.out_dir)
    head.save(head_file)
    evaluation_file = evaluation_path(config.label_set, config.out_dir)
    evaluation_file.write_text(json.dumps(evaluation, indent=2) + "\n")
    return TrainResult(head, evaluation, head_file, evaluation_file)


def _train_frozen_head(embeddings: np.ndarray, targets: np.ndarray, epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression per label, trained together (full batch) on fixed embeddings."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(embeddings)
    y = torch.from_numpy(targets)
    layer = torch.nn.Linear(x.shape[1], y.shape[1])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_positive_weight(targets))
    optimiser = torch.optim.AdamW(layer.parameters(), lr=FROZEN_LEARNING_RATE, weight_decay=FROZEN_WEIGHT_DECAY)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(layer(x), y)
        loss.backward()
        optimiser.step()
    log.debug("frozen head: final training loss %.4f", float(loss.detach()))
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def _out_of_fold_scores(features: np.ndarray, targets: np.ndarray, groups: Sequence[str], epochs: int, seed: int) -> np.ndarray:
    """Each utterance scored by a head that did not train on its group."""
    names = sorted(set(groups))
    np.random.default_rng(seed).shuffle(names)
    fold_of = {name: index % THRESHOLD_FOLDS for index, name in enumerate(names)}
    folds = np.array([fold_of[group] for group in groups])
    scores = np.zeros_like(targets)
    for fold in range(THRESHOLD_FOLDS):
        weight, bias = _train_frozen_head(features[folds != fold], targets[folds != fold], epochs, seed)
        scores[folds == fold] = label_scores(features[folds == fold], weight, bias)
    return scores


def _finetune(encoder: SentenceEncoder, data: IntentDataset, train: Sequence[Any], epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train the encoder and the head together, mini-batch, on the same layer means the head reads."""
    import torch

    torch.manual_seed(seed)
    model = encoder.module
    model.train()
    texts = [u.text for u in train]
    targets = torch.from_numpy(data.targets(train))
    head = torch.nn.Linear(encoder.layer_features, len(data.labels))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_positive_weight(targets.numpy()))
    optimiser = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": FINETUNE_ENCODER_LR}, {"params": head.parameters(), "lr": FINETUNE_HEAD_LR}]
    )
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(texts), generator=order).split(FINETUNE_BATCH):
            features = layer_means_tensor(model, [texts[i] for i in batch])
            loss = loss_fn(head(features), targets[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        log.info("fine-tuning epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(texts))
    model.eval()
    return head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


def _positive_weight(targets: np.ndarray) -> Any:
    """Each label is positive in a small share of examples; weigh positives up so recall is not starved."""
    import torch

    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return torch.from_numpy(np.clip(negatives / np.maximum(positives, 1), 1.0, 10.0).astype(np.float32))


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


def _data_fingerprint(label_set: str, data_dir: Optional[Path]) -> str:
    path = (data_dir or DATA_DIR) / f"{label_set}.jsonl"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_train_intent(
    label_sets: Sequence[str],
    encoder_dir: str,
    full_finetune: bool,
    epochs: int,
    out_dir: Path,
    data_dir: Optional[Path],
) -> int:
    """The `earshot train-intent` command: train, write head + evaluation, print a summary."""
    for label_set in label_sets:
        result = train_intent(
            TrainConfig(label_set, encoder_dir, full_finetune, epochs, data_dir=data_dir, out_dir=out_dir)
        )
        test = result.evaluation["test"]
        print(
            f"{label_set}: test micro-F1 {test['micro_f1']:.3f}, macro-F1 {test['macro_f1']:.3f}, "
            f"exact match {test['exact_match']:.3f} on {test['examples']} utterances"
        )
        for name, metrics in test["per_label"].items():
            print(f"  {name:<24} P {metrics['precision']:.2f}  R {metrics['recall']:.2f}  F1 {metrics['f1']:.2f}  n={metrics['support']}")
        print(f"  wrote {result.head_file} and {result.evaluation_file}")
    return 0

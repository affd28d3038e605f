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

Why this module is long: the two ways of training share the fold loop, the
threshold search and the one scoring of the test split, and read best as one
flow; the data (intent_dataset*.py), the corrections' merge
(intent_feedback_data.py) and the scores (intent_evaluation.py) are apart.

Frozen heads also read VADER's polarity and the TF-IDF of the words of the
text, and put at least one label on every utterance (models/intent.py and
models/intent_lexical.py say why, with the numbers). The words' vocabulary is
fitted on each fold's training part for the out-of-fold scores, on all of
train+validation for the head that ships.
Agents' corrections (`--with-feedback`) are merged by
models/intent_feedback_data.py; the evaluation then compares the heads
trained without and with them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from earshot.models.encoder import SentenceEncoder, layer_means_tensor
from earshot.models.intent import (
    BUNDLED_ENCODER,
    HEADS_DIR,
    LABEL_SETS,
    IntentHead,
    head_path,
    label_scores,
    sentiment_features,
)
from earshot.models.intent_dataset import DATA_DIR, IntentDataset, LabelledUtterance, load_dataset
from earshot.models.intent_dataset_build import batch_counts, batch_of_groups
from earshot.models.intent_evaluation import evaluate, served_evaluation, tune_best_plus, tune_thresholds
from earshot.models.intent_feedback import Correction
from earshot.models.intent_lexical import LexicalFeatures, fit_lexical

log = logging.getLogger(__name__)

FROZEN_EPOCHS = 500  # full-batch steps
FROZEN_LEARNING_RATE = 0.02
FROZEN_WEIGHT_DECAY = 1e-3
FINETUNE_EPOCHS = 6
FINETUNE_BATCH = 16
FINETUNE_ENCODER_LR = 5e-5
FINETUNE_HEAD_LR = 2e-3
THRESHOLD_FOLDS = 5
LEXICAL_SCALE = 0.5  # the TF-IDF rows' length next to the unit-length layer means (models/intent_lexical.py)
LEXICAL_MAX_TERMS = 4000  # above either label set's vocabulary (about 3,500 and 3,100 terms)
LEXICAL_MIN_DF = 2  # a term seen in one training utterance only is left out
DATA_NOTE = (
    "data_batches: examples per batch of hand-written bases and split. 'original' is the data the first heads "
    "were measured on (every example kept its split); 'hard-1' and 'hard-2' were appended in base_<set>.tsv after "
    "'#@batch' lines, written for the confused pairs, and split by the same rule among their own bases "
    "(models/intent_data/README.md). test_micro_f1_by_batch scores each batch's test examples."
)


@dataclass(frozen=True)
class TrainConfig:
    label_set: str
    encoder_dir: str = "mpnet"  # the shipped heads' (model_files.PACKAGED_ENCODERS); "" = the bundled MiniLM
    full_finetune: bool = False
    epochs: int = 0  # 0 = the default of the chosen way
    seed: int = 13
    data_dir: Optional[Path] = None
    out_dir: Path = HEADS_DIR
    feedback: tuple[Correction, ...] = field(default=(), repr=False)  # agents' corrections to learn from
    feedback_weight: float = 2.0  # loss weight of a corrected example (an ordinary one weighs 1)
    sentiment: bool = True  # append VADER's polarity to the features (frozen heads; see models/intent.py)
    rule: str = "best_plus"  # how scores become labels (IntentHead.decide)
    lexical: bool = True  # append the TF-IDF of word uni- and bigrams (frozen heads; models/intent_lexical.py)


@dataclass(frozen=True)
class TrainResult:
    head: IntentHead
    evaluation: dict[str, Any]
    head_file: Path
    evaluation_file: Path


def evaluation_path(label_set: str, out_dir: Path = HEADS_DIR) -> Path:
    return out_dir / f"{label_set}.eval.json"


@dataclass
class _Fit:
    head: IntentHead
    held_out_scores: np.ndarray
    held_out_targets: np.ndarray
    encoder: SentenceEncoder


def train_intent(config: TrainConfig) -> TrainResult:
    """Train one head, score it once on the test split, write head + evaluation.

    With corrections (`config.feedback`), two heads are trained, without and
    with them (models/intent_feedback_data.py), and the evaluation shows both
    on the unchanged test split and on the corrections' held-out split; the
    head with the corrections is the one written.
    """
    if config.label_set not in LABEL_SETS:
        raise ValueError(f"unknown label set {config.label_set!r}; known: {', '.join(LABEL_SETS)}")
    data = load_dataset(config.label_set, config.data_dir)
    train, validation, test = (data.split(name) for name in ("train", "validation", "test"))
    features = _FeatureCache()
    fit = _fit(config, data, train, validation, {}, features)
    evaluation: dict[str, Any] = {}
    if config.feedback:
        from earshot.models.intent_feedback_data import merge_feedback

        merged = merge_feedback(data, config.feedback, config.feedback_weight)
        before = fit
        fit = _fit(config, data, list(merged.train), list(merged.validation), merged.weights, features)
        fit.head.training["feedback"] = {"weight": config.feedback_weight, **merged.counts}
        held_out = list(merged.held_out)
        evaluation["feedback"] = {
            "weight": config.feedback_weight,
            "counts": merged.counts,
            "test_micro_f1": {"before": _micro_f1(before, data, test, features), "after": _micro_f1(fit, data, test, features)},
            "corrections_held_out_micro_f1": {
                "examples": len(held_out),
                "before": _micro_f1(before, data, held_out, features) if held_out else None,
                "after": _micro_f1(fit, data, held_out, features) if held_out else None,
            },
        }
    head = fit.head
    test_texts = [u.text for u in test]
    test_scores = head.scores(features(fit.encoder, test_texts), test_texts)
    evaluation = {
        "label_set": config.label_set,
        "training": head.training,
        "decide": head.rule,
        "thresholds": {name: round(float(t), 4) for name, t in zip(head.labels, head.thresholds)},
        "held_out": evaluate(head.labels, head.decide(fit.held_out_scores), fit.held_out_targets),
        "test": evaluate(head.labels, head.decide(test_scores), data.targets(test)),
        "data_note": DATA_NOTE,
        "data_batches": batch_counts(data, config.data_dir),
        "test_micro_f1_by_batch": _micro_f1_by_batch(head, data, test, test_scores, config.data_dir),
        # The same test split through the head as served: ONNX Runtime (MPNet in int8), one thread, timed here.
        "served": served_evaluation(config.encoder_dir, head, test_texts, data.targets(test))
        if not config.full_finetune
        else {"not_measured": "a fine-tuned encoder is timed where it is served (python -m bench.intent_bench)"},
        **evaluation,
    }
    head_file = head_path(config.label_set, config.out_dir)
    head.save(head_file)
    evaluation_file = evaluation_path(config.label_set, config.out_dir)
    evaluation_file.write_text(json.dumps(evaluation, indent=2) + "\n")
    return TrainResult(head, evaluation, head_file, evaluation_file)


class _FeatureCache:
    """Layer means of the frozen encoder, computed once per text for all the heads a run trains."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, str], np.ndarray] = {}

    def __call__(self, encoder: SentenceEncoder, texts: Sequence[str]) -> np.ndarray:
        # By length, so a batch pads little: the interview set's 887 texts took 38.2 s on MPNet in alphabetical
        # batches, 21.9 s by length (torch, 2 threads, dev container); the features differ by < 1e-6.
        missing = sorted({t for t in texts if (id(encoder), t) not in self._rows}, key=lambda t: (len(t), t))
        for start in range(0, len(missing), 64):
            chunk = missing[start : start + 64]
            for text, row in zip(chunk, encoder.layer_means(chunk)):
                self._rows[(id(encoder), text)] = row
        if not texts:
            return np.zeros((0, encoder.layer_features), dtype=np.float32)
        return np.stack([self._rows[(id(encoder), t)] for t in texts])


def _micro_f1_by_batch(
    head: IntentHead, data: IntentDataset, test: Sequence[LabelledUtterance], scores: np.ndarray, data_dir: Optional[Path]
) -> dict[str, float]:
    """Test micro-F1 on each batch's test examples ("original": the examples the first heads were measured on)."""
    batch_of = batch_of_groups(data, data_dir)
    out = {}
    for batch in sorted({batch_of[u.group] for u in test}, key=lambda b: (b != "original", b)):
        rows = np.asarray([batch_of[u.group] == batch for u in test])
        out[batch] = float(evaluate(head.labels, head.decide(scores[rows]), data.targets(test)[rows])["micro_f1"])
    return out


def _micro_f1(fit: _Fit, data: IntentDataset, examples: Sequence[LabelledUtterance], features: _FeatureCache) -> float:
    texts = [u.text for u in examples]
    scores = fit.head.scores(features(fit.encoder, texts), texts)
    return float(evaluate(fit.head.labels, fit.head.decide(scores), data.targets(examples))["micro_f1"])


def _fit(
    config: TrainConfig,
    data: IntentDataset,
    train: list[LabelledUtterance],
    validation: list[LabelledUtterance],
    weights: dict[str, float],
    features: _FeatureCache,
) -> _Fit:
    """One head (and, fine-tuning, its encoder) from these examples; thresholds from held-out scores."""
    import torch

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    encoder = SentenceEncoder.load(config.encoder_dir, threads=0)  # fresh each time: fine-tuning changes it
    sentiment = config.sentiment and not config.full_finetune  # the fine-tuned head reads layer means only
    lexical: Optional[LexicalFeatures] = None
    if config.full_finetune:
        epochs = config.epochs or FINETUNE_EPOCHS
        weight, bias = _finetune(encoder, data, train, epochs, config.seed, _weights(train, weights))
        encoder_name = f"{config.label_set}-encoder"
        encoder.save(config.out_dir / encoder_name)  # the tuned encoder the head needs
        recorded_encoder = encoder_name
        held_out_scores = label_scores(encoder.layer_means([u.text for u in validation]), weight, bias)
        held_out_targets = data.targets(validation)
        held_out = "validation"
    else:
        epochs = config.epochs or FROZEN_EPOCHS
        seen = train + validation
        texts = [u.text for u in seen]
        x, targets = features(encoder, texts), data.targets(seen)
        if sentiment:
            x = np.hstack([x, sentiment_features(texts)]).astype(np.float32)
        sample = _weights(seen, weights)
        held_out_scores = _out_of_fold_scores(
            x, targets, [u.group for u in seen], epochs, config.seed, sample, texts if config.lexical else None
        )
        held_out_targets = targets
        held_out = f"train+validation, {THRESHOLD_FOLDS}-fold out-of-fold"
        if config.lexical:
            lexical = _fit_lexical(texts)
            x = np.hstack([x, lexical(texts)])
        weight, bias = _train_frozen_head(x, targets, epochs, config.seed, sample)
        recorded_encoder = config.encoder_dir or BUNDLED_ENCODER

    if config.rule == "best_plus":
        thresholds = np.full(len(data.labels), tune_best_plus(held_out_scores, held_out_targets), dtype=np.float32)
    else:
        thresholds = tune_thresholds(held_out_scores, held_out_targets)
    head = IntentHead(
        config.label_set,
        data.labels,
        weight,
        bias,
        thresholds,
        recorded_encoder,
        sentiment=sentiment,
        rule=config.rule,
        lexical=lexical,
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
    return _Fit(head, held_out_scores, held_out_targets, encoder)


def _weights(examples: Sequence[LabelledUtterance], weights: dict[str, float]) -> Optional[np.ndarray]:
    if not weights:
        return None
    return np.asarray([weights.get(u.id, 1.0) for u in examples], dtype=np.float32)


def _train_frozen_head(
    embeddings: np.ndarray, targets: np.ndarray, epochs: int, seed: int, sample_weight: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression per label, trained together (full batch) on fixed embeddings."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(embeddings)
    y = torch.from_numpy(targets)
    layer = torch.nn.Linear(x.shape[1], y.shape[1])
    loss_fn = _loss(targets, sample_weight)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=FROZEN_LEARNING_RATE, weight_decay=FROZEN_WEIGHT_DECAY)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(layer(x), y, None)
        loss.backward()
        optimiser.step()
    log.debug("frozen head: final training loss %.4f", float(loss.detach()))
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def _fit_lexical(texts: Sequence[str]) -> LexicalFeatures:
    return fit_lexical(texts, LEXICAL_SCALE, LEXICAL_MAX_TERMS, LEXICAL_MIN_DF)


def _out_of_fold_scores(
    features: np.ndarray, targets: np.ndarray, groups: Sequence[str], epochs: int, seed: int,
    sample_weight: Optional[np.ndarray] = None, lexical_texts: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """Each utterance scored by a head that did not train on its group (nor on its words' vocabulary)."""
    names = sorted(set(groups))
    np.random.default_rng(seed).shuffle(names)
    fold_of = {name: index % THRESHOLD_FOLDS for index, name in enumerate(names)}
    folds = np.array([fold_of[group] for group in groups])
    scores = np.zeros_like(targets)
    for fold in range(THRESHOLD_FOLDS):
        fold_weight = None if sample_weight is None else sample_weight[folds != fold]
        seen, held = features[folds != fold], features[folds == fold]
        if lexical_texts is not None:
            lexical = _fit_lexical([t for t, f in zip(lexical_texts, folds) if f != fold])
            seen = np.hstack([seen, lexical([t for t, f in zip(lexical_texts, folds) if f != fold])])
            held = np.hstack([held, lexical([t for t, f in zip(lexical_texts, folds) if f == fold])])
        weight, bias = _train_frozen_head(seen, targets[folds != fold], epochs, seed, fold_weight)
        scores[folds == fold] = label_scores(held, weight, bias)
    return scores


def _finetune(
    encoder: SentenceEncoder, data: IntentDataset, train: Sequence[Any], epochs: int, seed: int,
    sample_weight: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train the encoder and the head together, mini-batch, on the same layer means the head reads."""
    import torch

    torch.manual_seed(seed)
    model = encoder.module
    model.train()
    texts = [u.text for u in train]
    targets = torch.from_numpy(data.targets(train))
    head = torch.nn.Linear(encoder.layer_features, len(data.labels))
    loss_fn = _loss(targets.numpy(), sample_weight)
    optimiser = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": FINETUNE_ENCODER_LR}, {"params": head.parameters(), "lr": FINETUNE_HEAD_LR}]
    )
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(texts), generator=order).split(FINETUNE_BATCH):
            features = layer_means_tensor(model, [texts[i] for i in batch])
            loss = loss_fn(head(features), targets[batch], batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        log.info("fine-tuning epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(texts))
    model.eval()
    return head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


def _loss(targets: np.ndarray, sample_weight: Optional[np.ndarray]) -> Any:
    """Binary cross-entropy with positives weighed up, each example weighed by `sample_weight` (corrections)."""
    import torch

    bce = torch.nn.BCEWithLogitsLoss(pos_weight=_positive_weight(targets), reduction="none")
    weights = None if sample_weight is None else torch.from_numpy(sample_weight)

    def loss(logits: Any, y: Any, rows: Any) -> Any:
        per_example = bce(logits, y).mean(dim=1)
        if weights is None:
            return per_example.mean()
        w = weights if rows is None else weights[rows]
        return (per_example * w).sum() / w.sum()

    return loss


def _positive_weight(targets: np.ndarray) -> Any:
    """Each label is positive in a small share of examples; weigh positives up so recall is not starved."""
    import torch

    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return torch.from_numpy(np.clip(negatives / np.maximum(positives, 1), 1.0, 10.0).astype(np.float32))


def _data_fingerprint(label_set: str, data_dir: Optional[Path]) -> str:
    path = (data_dir or DATA_DIR) / f"{label_set}.jsonl"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


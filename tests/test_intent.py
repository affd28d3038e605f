"""The intent heads: training reproduces the committed numbers, and the shipped heads behave.

Everything here runs the shipped heads' real encoder (MPNet, on torch) and the
project's labelled data set; training the frozen heads takes a minute or two.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from earshot.models.encoder import SentenceEncoder
from earshot.models.intent import HEADS_DIR, LABEL_SETS, MINILM_HEADS_DIR, IntentClassifier, IntentHead, IntentHeadError, head_path
from earshot.models.intent_dataset import DATA_DIR
from earshot.models.intent_training import TrainConfig, evaluation_path, train_intent
from earshot.models.model_files import ModelMissingError
from tests.conftest import REPO

# The target is 0.90; the shipped frozen heads (MPNet's layer means + VADER polarity + TF-IDF of
# words and word pairs, the best label plus one level) reach 0.927 (interview) and 0.907 (call_center) on
# the test split on torch's features. This floor catches a regression, not the target.
FLOOR_MICRO_F1 = 0.85
TOLERANCE = 0.02  # thread counts change float sums a little; a real change in training moves more


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier.load(LABEL_SETS)


@pytest.mark.parametrize("label_set", LABEL_SETS)
def test_committed_heads_stay_above_the_floor_on_the_test_split(label_set):
    evaluation = json.loads(evaluation_path(label_set).read_text())
    assert evaluation["test"]["micro_f1"] >= FLOOR_MICRO_F1, evaluation["test"]
    head = IntentHead.load(head_path(label_set))
    assert list(head.labels) == list(evaluation["thresholds"])
    assert head.training["data_sha256"] == evaluation["training"]["data_sha256"]


@pytest.mark.parametrize("label_set", LABEL_SETS)
def test_training_reproduces_the_committed_metrics(label_set, tmp_path):
    committed = json.loads(evaluation_path(label_set).read_text())
    result = train_intent(TrainConfig(label_set, out_dir=tmp_path))
    for split in ("held_out", "test"):
        for metric in ("micro_f1", "macro_f1"):
            assert result.evaluation[split][metric] == pytest.approx(committed[split][metric], abs=TOLERANCE), (split, metric)
    assert result.evaluation["training"]["data_sha256"] == committed["training"]["data_sha256"]
    # The head as a server runs it (MPNet's int8 graph, one thread): its labels on the test split as committed,
    # its times recorded (speed targets are bench.intent_bench's; this only checks they were measured).
    served = result.evaluation["served"]
    assert served["backend"] == "onnx" and served["utterances"] == committed["test"]["examples"]
    assert served["test_micro_f1"] == pytest.approx(committed["served"]["test_micro_f1"], abs=TOLERANCE)
    assert 0 < served["inference_ms"]["p50"] <= served["inference_ms"]["p95"] <= served["inference_ms"]["p99"]
    trained = IntentHead.load(result.head_file)
    shipped = IntentHead.load(head_path(label_set))
    assert np.abs(trained.thresholds - shipped.thresholds).max() <= 0.1
    assert trained.sentiment and shipped.sentiment and trained.rule == shipped.rule == "best_plus"
    assert trained.lexical is not None and trained.lexical.vocabulary == shipped.lexical.vocabulary


def test_every_utterance_gets_its_best_label_and_others_only_at_the_threshold(classifier, tmp_path):
    head = classifier.heads["call_center"]
    level = float(head.thresholds[0])
    assert np.all(head.thresholds == level)  # best_plus: one level for every other label
    scores = np.full((3, len(head.labels)), 0.01, dtype=np.float32)
    scores[0, 3] = 0.04  # nothing reaches the level: the best label alone is on
    scores[1, [2, 5]] = [min(level + 0.2, 0.99), level]  # the best, and another at the level
    scores[2, [2, 5]] = [min(level + 0.2, 0.99), level - 0.01]  # the other just under it
    on = head.decide(scores)
    assert on.sum(axis=1).tolist() == [1, 2, 1] and on[0, 3] and on[1, 2] and on[1, 5] and on[2, 2]
    at_least_one = replace(head, rule="at_least_one", thresholds=np.full(len(head.labels), 0.5, dtype=np.float32))
    assert at_least_one.decide(scores[:1]).sum() == 1 and at_least_one.decide(scores[:1])[0, 3]
    assert replace(head, rule="thresholds").decide(scores[:1]).sum() == 0


def test_old_heads_still_load_and_an_unknown_rule_is_refused(classifier, tmp_path):
    old = json.loads(head_path("interview").read_text())
    for key in ("sentiment_features", "decide", "lexical_features"):
        old.pop(key)
    width = classifier.encoder.layer_features  # 12 x 768 (MPNet)
    old["weight"] = [row[:width] for row in old["weight"]]  # a head from before the sentiment and word columns
    (tmp_path / "interview.json").write_text(json.dumps(old))
    loaded = IntentHead.load(tmp_path / "interview.json")
    assert not loaded.sentiment and loaded.rule == "thresholds" and loaded.encoder_dim == loaded.dim == width == 12 * 768
    old["decide"] = "vote"
    (tmp_path / "interview.json").write_text(json.dumps(old))
    with pytest.raises(IntentHeadError, match="decide 'vote' is not one of thresholds, at_least_one, best_plus"):
        IntentHead.load(tmp_path / "interview.json")


INTERVIEW_CASES = [
    ("could you say that again please", {"asks_to_repeat"}),
    ("sorry I didn't catch the question", {"asks_to_repeat"}),
    ("um can I get a hint on this one", {"asks_for_hint"}),
    ("I'd rather skip this question and move to the next", {"asks_to_skip"}),
    ("I think I want to end the interview here", {"wants_to_stop"}),
    ("so I would put a cache in front of the database and invalidate it on writes", {"answering"}),
    ("what do you mean by eventual consistency", {"asks_for_clarification"}),
    ("hang on my dog is barking one second", {"off_topic"}),
]
CALL_CENTER_CASES = [
    ("why was I charged twice on my bill this month", {"billing_inquiry"}),
    ("I want to cancel my subscription", {"cancellation"}),
    ("my internet keeps dropping every evening", {"technical_problem"}),
    ("where is my package it was supposed to arrive on monday", {"order_status"}),
    ("I need to update my home address", {"account_change"}),
    ("let me speak to your supervisor", {"escalation"}),
    ("thank you so much you've been really helpful", {"feedback_praise"}),
    ("hi good morning", {"greeting_other"}),
]


@pytest.mark.parametrize("label_set, text, expected", [
    *[("interview", text, labels) for text, labels in INTERVIEW_CASES],
    *[("call_center", text, labels) for text, labels in CALL_CENTER_CASES],
])
def test_shipped_heads_on_fixed_utterances(classifier, label_set, text, expected):
    prediction = classifier.classify(text, label_set)
    names = [label.name for label in prediction.labels]
    assert names and names[0] in expected, (text, prediction.scores)
    assert set(prediction.scores) == set(classifier.heads[label_set].labels)


def test_two_labels_at_once(classifier):
    prediction = classifier.classify(
        "this is the third time my bill is wrong and I want to talk to a manager right now", "call_center"
    )
    names = {label.name for label in prediction.labels}
    assert {"billing_inquiry", "escalation"} <= names | {"complaint"} and len(names) >= 2, prediction.scores


def test_a_missing_or_broken_head_names_its_file(tmp_path):
    with pytest.raises(IntentHeadError, match="does not exist"):
        IntentHead.load(tmp_path / "interview.json")
    broken = tmp_path / "interview.json"
    broken.write_text('{"labels": ["a"]')
    with pytest.raises(IntentHeadError, match="interview.json is malformed"):
        IntentHead.load(broken)
    data = json.loads(head_path("interview").read_text())
    data["bias"] = data["bias"][:-1]
    broken.write_text(json.dumps(data))
    with pytest.raises(IntentHeadError, match="labels but weight"):
        IntentHead.load(broken)


def test_an_encoder_that_does_not_fit_the_head_is_refused(classifier):
    head = classifier.heads["interview"]
    narrow = IntentHead(head.label_set, head.labels, head.weight[:, :100], head.bias, head.thresholds, head.encoder)
    with pytest.raises(IntentHeadError, match="expects 100-dimensional"):
        IntentClassifier(classifier.encoder, {"interview": narrow})


def test_a_missing_encoder_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelMissingError, match="does not exist"):
        IntentClassifier.load(["interview"], encoder_dir=str(tmp_path / "roberta-base"))


def small_data_dir(tmp_path, per_split: int):
    """A copy of the data set with the first `per_split` utterances of each split: for quick runs."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA_DIR / "labels.json", data / "labels.json")
    for label_set in LABEL_SETS:
        lines = (DATA_DIR / f"{label_set}.jsonl").read_text().splitlines()
        kept = []
        for split in ("train", "validation", "test"):
            kept += [line for line in lines if json.loads(line)["split"] == split][:per_split]
        (data / f"{label_set}.jsonl").write_text("\n".join(kept) + "\n")
    return data


def test_full_fine_tuning_writes_an_encoder_the_head_loads_with(tmp_path):
    data = small_data_dir(tmp_path, per_split=24)
    out = tmp_path / "heads"
    # On MiniLM: the mechanism is the same for MPNet, at five times the minutes.
    result = train_intent(TrainConfig("interview", "", full_finetune=True, epochs=1, data_dir=data, out_dir=out))
    assert result.head.training["mode"] == "full_finetune"
    assert (out / "interview-encoder" / "modules.json").is_file()
    tuned = IntentClassifier.load(["interview"], heads_dir=out)
    assert tuned.encoder.path == (out / "interview-encoder").resolve()
    assert tuned.classify("could you repeat that", "interview").scores


def test_the_cli_trains_and_rejects_a_bad_label_file(tmp_path):
    data = small_data_dir(tmp_path, per_split=30)
    ok = subprocess.run(
        [sys.executable, "-m", "earshot.server", "train-intent", "--label-set", "call_center", "--data-dir", str(data), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "call_center: test micro-F1" in ok.stdout
    assert (tmp_path / "out" / "call_center.json").is_file() and (tmp_path / "out" / "call_center.eval.json").is_file()

    lines = (data / "call_center.jsonl").read_text().splitlines()
    bad = json.loads(lines[2])
    bad["labels"] = ["refund_request"]
    lines[2] = json.dumps(bad)
    (data / "call_center.jsonl").write_text("\n".join(lines) + "\n")
    failed = subprocess.run(
        [sys.executable, "-m", "earshot.server", "train-intent", "--label-set", "call_center", "--data-dir", str(data), "--out", str(tmp_path / "out2")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert failed.returncode == 2
    assert "call_center.jsonl:3" in failed.stderr and "refund_request" in failed.stderr, failed.stderr


def test_the_encoder_is_shared_by_the_heads(classifier):
    assert isinstance(classifier.encoder, SentenceEncoder)
    assert set(classifier.heads) == set(LABEL_SETS)
    assert all(classifier.heads[name].encoder == "mpnet" for name in LABEL_SETS)
    assert HEADS_DIR.name == "intent_heads"
    assert all(IntentHead.load(head_path(name, MINILM_HEADS_DIR)).encoder == "bundled" for name in LABEL_SETS)

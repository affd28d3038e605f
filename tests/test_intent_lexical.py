"""The intent head's lexical channel (models/intent_lexical.py): TF-IDF of words and word pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from earshot.models.intent import HEADS_DIR, MINILM_HEADS_DIR, IntentHead, IntentHeadError, head_path
from earshot.models.intent_dataset import load_dataset
from earshot.models.intent_lexical import LexicalFeatures, fit_lexical, normalise, terms
from earshot.models.intent_training import LEXICAL_MAX_TERMS, LEXICAL_MIN_DF, LEXICAL_SCALE

TEXTS = [
    "I want to cancel my plan",
    "i want to cancel my subscription today",
    "The Wi-Fi keeps dropping, again!",
    "the wi fi keeps dropping every evening",
    "thanks so much, you've been great",
]


def test_words_read_alike_however_they_are_punctuated_or_cased():
    assert normalise("The Wi-Fi keeps DROPPING, again!") == ["the", "wi", "fi", "keeps", "dropping", "again"]
    assert normalise("'you've' been... great") == ["you've", "been", "great"]
    assert terms("uh the the bill", 2) == {"w:uh": 1, "w:the": 2, "w:bill": 1, "w:uh the": 1, "w:the the": 1, "w:the bill": 1}


def test_the_vocabulary_keeps_terms_of_several_utterances_and_rarer_terms_weigh_more():
    lexical = fit_lexical(TEXTS, scale=0.5, max_terms=100, min_df=2)
    assert "w:want to" in lexical.vocabulary and "w:keeps dropping" in lexical.vocabulary
    assert "w:subscription" not in lexical.vocabulary  # one utterance only
    idf = dict(zip(lexical.vocabulary, lexical.idf))
    assert all(v == idf["w:cancel"] for k, v in idf.items())  # every kept term is in exactly two of the five
    rows = lexical(["I want to cancel", "nothing here matches", "the Wi-Fi keeps dropping"])
    assert np.linalg.norm(rows, axis=1) == pytest.approx([0.5, 0.0, 0.5], abs=1e-6)
    capped = fit_lexical(TEXTS, scale=0.5, max_terms=3, min_df=1)
    assert capped.dim == 3 and all(t.startswith("w:") for t in capped.vocabulary)


def test_lexical_features_round_trip_through_json_exactly():
    lexical = fit_lexical(TEXTS, scale=0.5, max_terms=100, min_df=1)
    again = LexicalFeatures.from_json(json.loads(json.dumps(lexical.to_json())))
    assert again.vocabulary == lexical.vocabulary and np.array_equal(again.idf, lexical.idf)
    assert np.array_equal(again(TEXTS), lexical(TEXTS))
    broken = lexical.to_json() | {"idf": lexical.to_json()["idf"][:-1]}
    with pytest.raises(ValueError, match="idf"):
        LexicalFeatures.from_json(broken)


def test_the_shipped_heads_read_words_fitted_on_train_and_validation_only(tmp_path):
    data = load_dataset("call_center")
    seen = [u.text for u in data.split("train") + data.split("validation")]
    head = IntentHead.load(head_path("call_center"))
    assert head.lexical is not None and head.lexical.scale == LEXICAL_SCALE
    assert head.lexical.vocabulary == fit_lexical(seen, LEXICAL_SCALE, LEXICAL_MAX_TERMS, LEXICAL_MIN_DF).vocabulary
    assert head.encoder_dim == 12 * 768 and head.dim == 12 * 768 + 3 + head.lexical.dim  # MPNet's layer means
    head.save(tmp_path / "call_center.json")  # the head file round-trips exactly
    again = IntentHead.load(tmp_path / "call_center.json")
    assert np.array_equal(again.weight, head.weight) and again.lexical.vocabulary == head.lexical.vocabulary


# MPNet's features carry more of the meaning, so its head leans on the words less (0.58 against 0.44 there).
@pytest.mark.parametrize("heads_dir, margin", [(HEADS_DIR, 0.1), (MINILM_HEADS_DIR, 0.2)])
def test_the_words_move_the_scores_the_way_their_training_examples_do(heads_dir, margin):
    head = IntentHead.load(head_path("call_center", heads_dir))
    means = np.zeros((1, head.encoder_dim), dtype=np.float32)  # the same encoder features for both texts
    column = head.labels.index("cancellation")
    cancel = head.scores(means, ["i want to cancel my subscription"])[0, column]
    other = head.scores(means, ["what time is it over there"])[0, column]
    assert cancel > other + margin, (cancel, other)
    with pytest.raises(ValueError, match="pass them"):
        head.scores(means)


def test_a_head_whose_word_columns_leave_no_room_for_the_encoder_is_refused(tmp_path):
    data = json.loads(head_path("interview").read_text())
    data["weight"] = [row[: 3 + len(data["lexical_features"]["vocabulary"])] for row in data["weight"]]
    (tmp_path / "interview.json").write_text(json.dumps(data))
    with pytest.raises(IntentHeadError, match="interview.json"):
        IntentHead.load(tmp_path / "interview.json")

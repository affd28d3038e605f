"""Knowledge search with the real bundled MiniLM, and the errors a hand-edited file gets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from earshot.agents.knowledge import DEFAULT_PATH, KnowledgeBase, KnowledgeError
from earshot.models.encoder import SentenceEncoder


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.load()


@pytest.fixture(scope="module")
def knowledge(encoder) -> KnowledgeBase:
    base = KnowledgeBase.load()
    asyncio.run(base.embed(_embedder(encoder)))
    return base


def _embedder(encoder: SentenceEncoder):
    async def embed(texts: Sequence[str]) -> np.ndarray:
        return encoder.encode(texts)

    return embed


def search(knowledge: KnowledgeBase, encoder: SentenceEncoder, query: str, **kwargs):
    return knowledge.search(encoder.encode([query])[0], **kwargs)


def test_the_bundled_file_loads():
    base = KnowledgeBase.load()
    assert base.path == DEFAULT_PATH and len(base.entries) >= 25
    assert all(entry.answer and entry.examples and entry.topics for entry in base.entries)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("how do i reset my router", "router-reset"),
        ("is the network down in my area", "outage-check"),
        ("i want to cancel my contract", "cancellation-policy"),
        ("i found a better deal with another company so i am leaving", "retention-offer"),
        ("you took the payment twice from my card", "double-charge"),
        ("i forgot my password and can't get in", "password-reset"),
        ("i have moved house", "address-change"),
        ("when do i get my money back", "refund-timing"),
        ("the blender arrived broken", "damaged-item"),
        ("get me your supervisor", "escalation-policy"),
        ("what time do you close", "opening-hours"),
    ],
)
def test_customer_phrasings_find_their_entry(knowledge, encoder, query, expected):
    hits = search(knowledge, encoder, query, k=3)
    assert hits[0].entry.id == expected, [(h.entry.id, h.score) for h in hits]


def test_hits_are_ranked_with_scores(knowledge, encoder):
    hits = search(knowledge, encoder, "my parcel has not arrived", k=5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score > 0.9  # one of the entry's own examples


def test_the_call_topic_breaks_near_ties(knowledge, encoder):
    query = "it is not working"
    plain = search(knowledge, encoder, query, k=len(knowledge.entries))
    on_topic = search(knowledge, encoder, query, k=len(knowledge.entries), topic="returns_refunds")
    plain_score = {h.entry.id: h.score for h in plain}
    boosted = {h.entry.id: h.score for h in on_topic}
    assert boosted["damaged-item"] == pytest.approx(plain_score["damaged-item"] + 0.05, abs=1e-3)
    assert boosted["router-reset"] == plain_score["router-reset"]


def test_search_before_embedding_says_so():
    with pytest.raises(RuntimeError, match="embed"):
        KnowledgeBase.load().search(np.zeros(384, dtype=np.float32))


# --- bad files ---------------------------------------------------------------------------


def write(tmp_path: Path, content) -> Path:
    path = tmp_path / "knowledge.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GOOD = {"id": "a", "title": "A", "answer": "Say this.", "topics": ["billing_payments"], "examples": ["x"]}


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{", "not valid JSON: .* line 1"),
        ({"entries": []}, "expected a non-empty JSON list"),
        ([], "expected a non-empty JSON list"),
        (["just text"], "entry 1: expected an object"),
        ([{k: v for k, v in GOOD.items() if k != "answer"}], r"entry 1 \(a\): missing field 'answer'"),
        ([{**GOOD, "title": ""}], r"entry 1 \(a\): 'title' must be a non-empty string"),
        ([{**GOOD, "examples": "x"}], r"'examples' must be a list of non-empty strings"),
        ([GOOD, {**GOOD}], r"entry 2: id 'a' is used twice"),
    ],
)
def test_a_bad_file_names_itself_and_the_problem(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(KnowledgeError, match=message) as caught:
        KnowledgeBase.load(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(KnowledgeError, match="no such file"):
        KnowledgeBase.load(tmp_path / "nope.json")


def test_topics_are_optional(tmp_path):
    base = KnowledgeBase.load(write(tmp_path, [{k: v for k, v in GOOD.items() if k != "topics"}]))
    assert base.entries[0].topics == ()

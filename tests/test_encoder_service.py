"""The encoder service: one encoder pass per text for intents, topics and knowledge; simultaneous requests batched.

Runs the real bundled MiniLM (torch backend here: the ONNX path has its own
tests in test_encoder_onnx.py) and the shipped MiniLM intent heads, which share
it; the default heads, on MPNet, get an encoder of their own.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest

from earshot.models.encoder import SentenceEncoder
from earshot.models.intent import LABEL_SETS, MINILM_HEADS_DIR, IntentClassifier, IntentHeadError
from earshot.server.encoder_service import EncoderService, load_classifier
from earshot.server.settings import Settings

FINALS = [
    "hi i'm calling about my bill it went up again",
    "the internet keeps dropping every evening",
    "um could you say the question one more time",
    "i want to cancel the streaming add-on",
    "thanks you've been really helpful",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.load("", threads=1)


@pytest.fixture(scope="module")
def classifier(encoder) -> IntentClassifier:
    return load_classifier(Settings(encoder_backend="torch", intent_heads_dir=str(MINILM_HEADS_DIR)), encoder)


@pytest.fixture(scope="module")
def mpnet_intents(encoder) -> IntentClassifier:
    """The default heads, trained on MPNet: they load an encoder of their own."""
    return load_classifier(Settings(encoder_backend="torch"), encoder)


class Counting:
    """Counts the encoder passes (and the texts in each) the service makes."""

    def __init__(self, encoder: SentenceEncoder, monkeypatch) -> None:
        self.passes: list[int] = []
        layer_means, encode = encoder.layer_means, encoder.encode

        def counted_layer_means(texts):
            self.passes.append(len(texts))
            return layer_means(texts)

        def counted_encode(texts):
            self.passes.append(len(texts))
            return encode(texts)

        monkeypatch.setattr(encoder, "layer_means", counted_layer_means)
        monkeypatch.setattr(encoder, "encode", counted_encode)


async def test_knowledge_search_of_a_final_reuses_the_pass_its_intent_made(encoder, classifier, monkeypatch):
    expected = encoder.encode([FINALS[0]])
    service = EncoderService(encoder, classifier, cache_size=64)
    counting = Counting(encoder, monkeypatch)
    try:
        prediction = await service.classify(FINALS[0], "call_center")
        vectors = await service.encode([FINALS[0]])  # what the assist agent's topic and knowledge search ask for
        again = await service.encode([FINALS[0]])
    finally:
        service.close()
    assert counting.passes == [1]
    assert {label.name for label in prediction.labels} == {label.name for label in classifier.classify(FINALS[0], "call_center").labels}
    assert np.abs(vectors - expected).max() < 1e-4
    assert np.array_equal(vectors, again)
    assert service.cache.hits == 2 and service.cache.misses == 1


async def test_simultaneous_finals_go_through_the_encoder_as_one_batch(encoder, classifier, monkeypatch):
    service = EncoderService(encoder, classifier, cache_size=64)
    counting = Counting(encoder, monkeypatch)
    try:
        predictions = await asyncio.gather(*(service.classify(text, "call_center") for text in FINALS))
    finally:
        service.close()
    assert counting.passes == [len(FINALS)]
    for text, prediction in zip(FINALS, predictions):
        alone = classifier.classify(text, "call_center")
        assert prediction.scores.keys() == alone.scores.keys()
        assert max(abs(prediction.scores[k] - alone.scores[k]) for k in alone.scores) < 1e-3
        assert prediction.inference_s > 0


async def test_finals_arriving_while_the_encoder_is_busy_wait_and_go_together(encoder, classifier, monkeypatch):
    service = EncoderService(encoder, classifier, cache_size=64)
    counting = Counting(encoder, monkeypatch)
    try:
        first = asyncio.ensure_future(service.classify(FINALS[0], "call_center"))
        await asyncio.sleep(0)  # the first pass starts on the encoder thread
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(service.classify(text, "call_center")) for text in FINALS[1:]]
        await asyncio.gather(first, *rest)
    finally:
        service.close()
    assert sum(counting.passes) == len(FINALS)
    assert len(counting.passes) < len(FINALS), counting.passes  # the ones that waited shared a pass


async def test_the_cache_is_bounded_and_keeps_the_recent_texts(encoder, classifier):
    service = EncoderService(encoder, classifier, cache_size=2)
    try:
        for text in FINALS[:3]:
            await service.encode([text])
    finally:
        service.close()
    assert len(service.cache) == 2
    assert service.cache.get(("features", FINALS[0])) is None
    assert service.cache.get(("features", FINALS[2])) is not None


async def test_without_intents_embeddings_still_come_one_pass_per_text(encoder, monkeypatch):
    service = EncoderService(encoder, None, cache_size=8)
    counting = Counting(encoder, monkeypatch)
    try:
        first = await service.encode(FINALS[:2])
        second = await service.encode(FINALS[1:3])
    finally:
        service.close()
    assert counting.passes == [2, 1]
    assert first.shape == (2, 384) and np.array_equal(first[1], second[0])
    with pytest.raises(RuntimeError, match="intent classification is off"):
        await service.classify(FINALS[0], "call_center")


async def test_a_failed_pass_fails_its_waiters_and_the_next_request_works(encoder, classifier, monkeypatch):
    service = EncoderService(encoder, classifier, cache_size=8)
    real = encoder.layer_means
    calls = []

    def flaky(texts):
        calls.append(len(texts))
        if len(calls) == 1:
            raise RuntimeError("encoder fell over")
        return real(texts)

    monkeypatch.setattr(encoder, "layer_means", flaky)
    try:
        results = await asyncio.gather(*(service.classify(t, "interview") for t in FINALS[:2]), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "fell over" in str(r) for r in results)
        assert (await service.classify(FINALS[0], "interview")).scores
    finally:
        service.close()
    with pytest.raises(IntentHeadError, match="no intent head for label set 'sales'"):
        await service.classify("hello", "sales")


def test_load_classifier_builds_a_new_one_and_leaves_the_one_in_use_alone(encoder, classifier, tmp_path):
    service = EncoderService(encoder, classifier)
    heads = tmp_path / "heads"
    shutil.copytree(MINILM_HEADS_DIR, heads)
    settings = Settings(encoder_backend="torch", intent_heads_dir=str(heads))
    fresh = load_classifier(settings, encoder)
    assert fresh is not classifier and fresh.encoder is encoder and set(fresh.heads) == set(LABEL_SETS)
    assert service.intents is classifier

    data = json.loads((heads / "call_center.json").read_text())
    data["weight"] = data["weight"][:-1]
    (heads / "call_center.json").write_text(json.dumps(data))
    with pytest.raises(IntentHeadError, match="call_center.json: 9 labels but weight"):
        load_classifier(settings, encoder)
    with pytest.raises(IntentHeadError, match="does not exist"):
        load_classifier(Settings(encoder_backend="torch", intent_heads_dir=str(tmp_path / "nowhere")), encoder)
    assert service.intents is classifier
    service.use_intents(fresh)
    assert service.intents is fresh
    service.close()


async def test_the_default_heads_classify_on_their_own_encoder_and_topics_stay_on_minilm(encoder, mpnet_intents, monkeypatch):
    """The shipped heads were trained on MPNet: it is loaded for them, and embeddings stay MiniLM's, one pass each."""
    intents = mpnet_intents
    assert intents.encoder is not encoder and intents.encoder.layer_features == 12 * 768
    service = EncoderService(encoder, intents)
    on_minilm, on_mpnet = Counting(encoder, monkeypatch), Counting(intents.encoder, monkeypatch)
    try:
        prediction = await service.classify(FINALS[1], "call_center")
        embedding = await service.encode([FINALS[1]])
        again = await service.classify(FINALS[1], "call_center")
    finally:
        service.close()
    assert on_mpnet.passes == [1] and on_minilm.passes == [1]  # the second classify came from the cache
    assert embedding.shape == (1, 384) and np.allclose(embedding, encoder.encode([FINALS[1]]), atol=1e-5)
    assert prediction.labels[0].name == "technical_problem" and again.labels == prediction.labels


async def test_a_final_s_embedding_is_not_kept_waiting_behind_its_intent_on_another_encoder(encoder, mpnet_intents, monkeypatch):
    """Asked together (a customer's final: its intent, and its knowledge search), MiniLM's pass goes first."""
    intents = mpnet_intents
    order: list[str] = []
    for name, model, method in (("minilm", encoder, "encode"), ("mpnet", intents.encoder, "layer_means")):
        real = getattr(model, method)
        monkeypatch.setattr(model, method, lambda texts, real=real, name=name: order.append(name) or real(texts))
    service = EncoderService(encoder, intents)
    try:
        await asyncio.gather(service.classify(FINALS[0], "call_center"), service.encode([FINALS[0]]))
    finally:
        service.close()
    assert order == ["minilm", "mpnet"]

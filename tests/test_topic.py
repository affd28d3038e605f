"""Call topics with the real bundled MiniLM; the LLM option with a fake LLM."""

from __future__ import annotations

import asyncio
import json

import pytest

from earshot.agents.topic import DEFAULT_PATH, LlmTopic, TopicConfig, TopicDetector, TopicError, TopicList
from earshot.models.llm import LlmTimeout
from tests.assist_fixtures import FakeLlm, embed, encoder, topics  # noqa: F401 (fixtures)


def test_the_bundled_list_loads():
    topic_list = TopicList.load()
    assert topic_list.path == DEFAULT_PATH and len(topic_list.topics) == 10
    assert {"billing_payments", "technical_support", "general_enquiry"} <= {t.name for t in topic_list.topics}


@pytest.mark.parametrize(
    "finals, expected",
    [
        (["why is my bill so much higher this month", "there is a charge i don't recognise"], "billing_payments"),
        (["my wifi keeps dropping out every evening", "let's restart the router"], "technical_support"),
        (["i want to end my contract and leave", "can i ask why you want to leave"], "cancellation_retention"),
        (["my parcel was meant to arrive on monday", "let me look up your tracking number"], "orders_delivery"),
        (["the jacket doesn't fit and i want to send it back"], "returns_refunds"),
        (["i want to speak to a manager this is the third time i have called"], "complaints_service"),
    ],
)
async def test_clear_talk_names_its_topic(topics, embed, finals, expected):
    detector = TopicDetector(topics)
    for i, text in enumerate(finals):
        detector.add_final("customer" if i % 2 == 0 else "agent", text)
    update = await detector.update(embed)
    assert update is not None and update.topic == expected, update
    assert update.source == "embedding" and update.label
    assert update.candidates[0]["name"] == expected and len(update.candidates) == 3
    assert update.score == update.candidates[0]["score"]


async def test_an_update_comes_only_when_the_topic_changes(topics, embed):
    detector = TopicDetector(topics)
    detector.add_final("customer", "why is my bill so much higher this month")
    assert (await detector.update(embed)).topic == "billing_payments"
    detector.add_final("agent", "let me look at the charges on your bill")
    assert await detector.update(embed) is None  # still billing: nothing to send
    assert detector.current.topic == "billing_payments"


async def test_hysteresis_keeps_the_topic_until_another_clearly_wins(topics, embed):
    detector = TopicDetector(topics, config=TopicConfig(switch_margin=1.0))  # nothing can beat it by 1.0
    detector.add_final("customer", "why is my bill so much higher this month")
    await detector.update(embed)
    for text in ("my wifi keeps dropping out", "the router light is red", "is there an outage"):
        detector.add_final("customer", text)
        assert await detector.update(embed) is None
    assert detector.current.topic == "billing_payments"

    switching = TopicDetector(topics)  # the default margin
    switching.add_final("customer", "why is my bill so much higher this month")
    await switching.update(embed)
    changes = []
    for text in ("my wifi keeps dropping out", "the router light is red", "is there an outage in my area"):
        switching.add_final("customer", text)
        changes.append(await switching.update(embed))
    assert switching.current.topic == "technical_support"
    assert sum(change is not None for change in changes) == 1  # changed once, did not flicker


def test_the_window_keeps_recent_whole_finals_within_the_word_budget(topics):
    detector = TopicDetector(topics, config=TopicConfig(window_finals=3, window_words=9))
    for text in ("one two three", "four five six seven", "eight nine", "ten eleven twelve thirteen"):
        detector.add_final("customer", text)
    assert [text for _, text in detector.window()] == ["eight nine", "ten eleven twelve thirteen"]
    detector.add_final("agent", " ".join(["word"] * 30))  # longer than the budget: still kept, alone
    assert len(detector.window()) == 1


async def test_no_talk_no_topic(topics, embed):
    assert await TopicDetector(topics).update(embed) is None


# --- LLM --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("billing_payments", "billing_payments"),
        ("Topic: returns_refunds.", "returns_refunds"),
        ("  technical support\n", "technical_support"),
        ("Orders & delivery", "orders_delivery"),
        ("billing_payments or returns_refunds", None),  # two: no single answer
        ("I think this call is about the weather", None),
        ("", None),
    ],
)
def test_llm_replies_are_parsed_against_the_names(topics, reply, expected):
    assert LlmTopic(FakeLlm(), topics).parse(reply) == expected


async def test_the_llm_names_the_topic_when_it_answers_with_one(topics, embed):
    llm = FakeLlm("returns_refunds\nbecause the customer")
    detector = TopicDetector(topics, llm_topic=LlmTopic(llm, topics))
    detector.add_final("customer", "why is my bill so much higher this month")
    update = await detector.update(embed)
    assert update.topic == "returns_refunds" and update.source == "llm"
    assert "why is my bill so much higher" in llm.prompts[0] and "- billing_payments:" in llm.prompts[0]


@pytest.mark.parametrize("llm", [FakeLlm("I'm not sure, sorry"), FakeLlm(fail=LlmTimeout("no first token"))])
async def test_garbage_or_a_timeout_leaves_the_embedding_choice(topics, embed, llm):
    detector = TopicDetector(topics, llm_topic=LlmTopic(llm, topics))
    detector.add_final("customer", "why is my bill so much higher this month")
    update = await detector.update(embed)
    assert update.topic == "billing_payments" and update.source == "embedding"


async def test_a_slow_llm_is_cut_off(topics):
    class SlowLlm(FakeLlm):
        async def stream_chat(self, messages, **kwargs):
            await asyncio.sleep(5)
            yield "billing_payments"

    assert await LlmTopic(SlowLlm(), topics, timeout_s=0.05).pick([("customer", "hello")]) is None


# --- bad files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ("nope", "not valid JSON"),
        ([{"name": "a", "label": "A"}], r"entry 1 \(a\): missing field 'description'"),
        ([{"name": "a", "label": "A", "description": "d", "examples": [1]}], "'examples' must be a list"),
        ([{"name": "a", "label": "A", "description": "d"}] * 2, "name 'a' is used twice"),
    ],
)
def test_a_bad_topic_file_names_itself_and_the_problem(tmp_path, content, message):
    path = tmp_path / "topics.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(TopicError, match=message) as caught:
        TopicList.load(path)
    assert str(caught.value).startswith(f"{path}: ")

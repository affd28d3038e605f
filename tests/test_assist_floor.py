"""The assist overlay's confidence floor, with the real bundled MiniLM, topics and knowledge.

Below the shipped floors (settings `assist_topic_floor`, `assist_suggestion_floor`,
chosen by bench/support_bench.py) the overlay says "topic unclear" and
withholds the suggestion instead of guessing; above them it names the topic
and suggests as before. The first line is what a read sentence got before the
floor: the suggestion "I can update your address now..." and a topic, both at
a similarity of 0.14.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from earshot.agents.assist_agent import AssistAgent
from earshot.agents.topic import TopicConfig, TopicDetector
from earshot.server.configs import assist_config, topic_config
from earshot.server.protocol import SuggestionUpdate, TopicUpdate
from earshot.server.settings import Settings, SettingsError
from tests.assist_fixtures import embed, encoder, knowledge, topics  # noqa: F401 (fixtures)

NOTHING = "He was not an old-sposed young man."
BILLING = "I've been charged twice this month, the same payment came out of my card two times."


def overlay_agent(topics, knowledge, embed, settings: Settings = Settings()):  # noqa: F811
    updates: list = []

    def emit(update) -> None:
        json.dumps({"type": update.kind, **dataclasses.asdict(update)})  # as it goes on the wire
        updates.append(update)

    agent = AssistAgent(
        embed=embed, knowledge=knowledge, topics=TopicDetector(topics, config=topic_config(settings)),
        llm=None, emit=emit, config=assist_config(settings),
    )
    return agent, updates


def of(updates: list, kind: type) -> list:
    return [u for u in updates if isinstance(u, kind)]


def test_the_shipped_floors_are_on():
    settings = Settings()
    assert 0 < settings.assist_topic_floor < 1 and 0 < settings.assist_suggestion_floor < 1


@pytest.mark.asyncio
async def test_words_that_match_nothing_get_no_suggestion_and_topic_unclear(topics, knowledge, embed):  # noqa: F811
    agent, updates = overlay_agent(topics, knowledge, embed)
    agent.final("customer", 1, 1, NOTHING, 0.0, 2.0, 7, [])
    await agent.idle()
    [suggestion] = of(updates, SuggestionUpdate)
    assert suggestion.withheld and suggestion.text == "" and suggestion.knowledge_ids == []
    assert suggestion.source == "none" and suggestion.final
    assert suggestion.score < Settings().assist_suggestion_floor  # the best entry's score, for the record
    [topic] = of(updates, TopicUpdate)
    assert topic.state == "unclear" and topic.topic == "" and topic.label == "Topic unclear"
    assert topic.score < Settings().assist_topic_floor
    summary = agent.summary(2.0)
    assert summary["suggestions_withheld"] == 1 and summary["topic"]["state"] == "unclear"
    assert summary["confidence_floor"] == {
        "topic": Settings().assist_topic_floor, "suggestion": Settings().assist_suggestion_floor
    }
    await agent.close()


@pytest.mark.asyncio
async def test_words_that_match_get_their_topic_and_suggestion_once_clear(topics, knowledge, embed):  # noqa: F811
    agent, updates = overlay_agent(topics, knowledge, embed)
    agent.final("customer", 1, 1, NOTHING, 0.0, 2.0, 7, [])
    await agent.idle()
    agent.final("customer", 2, 2, NOTHING, 2.5, 4.0, 7, [])  # still unclear: said once, not again
    await agent.idle()
    agent.final("customer", 3, 3, BILLING, 4.5, 9.0, 16, [])
    await agent.idle()
    suggestions = of(updates, SuggestionUpdate)
    assert [s.withheld for s in suggestions] == [True, True, False]
    assert suggestions[-1].knowledge_ids[0] == "double-charge" and suggestions[-1].text == knowledge.get("double-charge").answer
    assert [(t.state, t.topic) for t in of(updates, TopicUpdate)] == [("unclear", ""), ("named", "billing_payments")]
    summary = agent.summary(9.0)
    assert summary["suggestions_withheld"] == 2 and summary["topic"]["topic"] == "billing_payments"
    assert [t["state"] for t in summary["topic_history"]] == ["unclear", "named"]
    await agent.close()


@pytest.mark.asyncio
async def test_a_named_topic_gives_way_to_unclear_only_when_no_topic_clears_the_floor(topics, embed):  # noqa: F811
    detector = TopicDetector(topics, config=TopicConfig(window_finals=1, floor=Settings().assist_topic_floor))
    detector.add_final("customer", BILLING)
    assert (await detector.update(embed)).topic == "billing_payments"
    detector.add_final("customer", NOTHING)  # the window is now only words that match nothing
    update = await detector.update(embed)
    assert update.state == "unclear" and detector.named is None
    assert await detector.update(embed) is None  # unclear is said once


@pytest.mark.asyncio
async def test_no_floor_guesses_as_before(topics, knowledge, embed):  # noqa: F811
    agent, updates = overlay_agent(
        topics, knowledge, embed, Settings(assist_topic_floor=0.0, assist_suggestion_floor=0.0)
    )
    agent.final("customer", 1, 1, NOTHING, 0.0, 2.0, 7, [])
    await agent.idle()
    assert not of(updates, SuggestionUpdate)[0].withheld and of(updates, SuggestionUpdate)[0].text
    assert of(updates, TopicUpdate)[0].state == "named"
    await agent.close()


def test_a_floor_outside_a_cosine_is_refused():
    with pytest.raises(SettingsError) as caught:
        Settings(assist_topic_floor=1.5, assist_suggestion_floor=-2.0)
    assert "assist_topic_floor must be in -1..1" in str(caught.value)
    assert "assist_suggestion_floor must be in -1..1" in str(caught.value)

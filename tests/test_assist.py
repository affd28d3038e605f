"""AssistAgent with the real bundled MiniLM and fake LLMs: what the overlay gets, and when."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Callable, Optional, Sequence

import pytest

from earshot.agents.assist_agent import AssistAgent, AssistConfig
from earshot.agents.topic import TopicDetector
from earshot.models.llm import LlmError, LlmTimeout
from earshot.server.protocol import CallMetricsUpdate, SentimentUpdate, SuggestionUpdate, TopicUpdate
from tests.assist_fixtures import FakeLlm, embed, encoder, knowledge, topics  # noqa: F401 (fixtures)

ROUTER = "how do i reset my router it keeps dropping"
ROUTER_REPLY = "Let's restart the router: switch it off at the wall and wait 30 seconds before you switch it back on."


def router_llm(fail: Optional[Exception] = None) -> FakeLlm:
    return FakeLlm(ROUTER_REPLY, fail)


class Overlay:
    """Collects what the agent emits, as the server would send it."""

    def __init__(self) -> None:
        self.updates: list = []

    def __call__(self, update) -> None:
        json.dumps({"type": update.kind, **dataclasses.asdict(update)})  # must be JSON-ready
        self.updates.append(update)

    def of(self, kind: type) -> list:
        return [u for u in self.updates if isinstance(u, kind)]

    async def until(self, predicate: Callable[["Overlay"], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"timed out; got {self.updates}"
            await asyncio.sleep(0.01)


def make_agent(embed, knowledge, topics, llm=None, config=AssistConfig()) -> tuple[AssistAgent, Overlay]:
    overlay = Overlay()
    agent = AssistAgent(
        embed=embed, knowledge=knowledge, topics=TopicDetector(topics), llm=llm, emit=overlay, config=config
    )
    return agent, overlay


def say(agent: AssistAgent, speaker: str, utterance_id: int, seq: int, text: str, start: float, end: float,
        intents: Sequence[tuple[str, float]] = ()) -> None:
    agent.speech_started(speaker, utterance_id, start)
    agent.speech_ended(speaker, utterance_id, start, end, False)
    agent.final(speaker, utterance_id, seq, text, start, end, len(text.split()), list(intents))


def suggestions_for(overlay: Overlay, utterance_id: int) -> list[SuggestionUpdate]:
    return [s for s in overlay.of(SuggestionUpdate) if s.utterance_id == utterance_id]


async def test_without_an_llm_the_knowledge_answer_is_final_and_quick(embed, knowledge, topics):
    agent, overlay = make_agent(embed, knowledge, topics)
    say(agent, "customer", 1, 1, ROUTER, 0.5, 3.0)
    # Metrics and sentiment need no encoder: they are out before final() returns.
    assert [type(u) for u in overlay.updates] == [CallMetricsUpdate, SentimentUpdate]
    await overlay.until(lambda o: o.of(SuggestionUpdate) and o.of(TopicUpdate))
    (suggestion,) = overlay.of(SuggestionUpdate)
    assert suggestion.source == "knowledge" and suggestion.final
    assert suggestion.knowledge_ids == ["router-reset"] and suggestion.text == knowledge.get("router-reset").answer
    assert suggestion.utterance_id == 1 and suggestion.score > 0.5
    assert suggestion.latency_s < 0.5  # one short encode; typically ~10-30 ms
    assert overlay.of(TopicUpdate)[0].topic == "technical_support"
    await agent.close()


async def test_the_llm_rewords_the_knowledge_answer_after_it(embed, knowledge, topics):
    llm = router_llm()
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm)
    say(agent, "agent", 1, 1, "thanks for calling how can i help", 0.0, 2.0)
    say(agent, "customer", 1, 2, ROUTER, 2.5, 5.0)
    await overlay.until(lambda o: len(o.of(SuggestionUpdate)) == 2)
    first, second = overlay.of(SuggestionUpdate)
    assert (first.source, first.final, first.knowledge_ids) == ("knowledge", False, ["router-reset"])
    assert (second.source, second.final, second.text) == ("llm", True, ROUTER_REPLY)
    assert second.knowledge_ids[0] == "router-reset" and second.utterance_id == 1
    assert first.latency_s <= second.latency_s
    # Grounded: the prompt holds the knowledge answer, the earlier talk and the customer's words.
    prompt = llm.prompts[-1]
    assert knowledge.get("router-reset").answer in prompt
    assert "Agent: thanks for calling" in prompt and ROUTER in prompt
    await agent.close()


@pytest.mark.parametrize(
    "llm, why",
    [
        (FakeLlm(fail=LlmTimeout("no first token within 3 s")), "timeout"),
        (FakeLlm(fail=LlmError("connection refused")), "error"),
        (FakeLlm("As an AI, I cannot help with routers."), "role confusion"),
        (FakeLlm("Customer: my router is broken Agent: ok"), "a transcript"),
        (FakeLlm("Would you like me to write a reply for the customer?"), "a question to the agent"),
        (FakeLlm("I can send an engineer tomorrow for just $20."), "an invented price"),
        (FakeLlm("   "), "nothing"),
        (FakeLlm("word " * 60), "rambling"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_a_failed_or_bad_llm_reply_falls_back_to_the_knowledge_answer(embed, knowledge, topics, llm, why):
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm)
    say(agent, "customer", 7, 1, ROUTER, 0.5, 3.0)
    await overlay.until(lambda o: any(s.final for s in o.of(SuggestionUpdate)))
    first, second = overlay.of(SuggestionUpdate)
    assert not first.final and second.final
    assert second.source == "knowledge" and second.text == first.text == knowledge.get("router-reset").answer
    assert second.knowledge_ids == ["router-reset"]
    await agent.close()


async def test_a_slow_llm_is_cut_off_at_the_timeout(embed, knowledge, topics):
    llm = router_llm()
    llm.gate = asyncio.Event()  # never set: the LLM never answers
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm, config=AssistConfig(suggestion_timeout_s=0.2))
    say(agent, "customer", 1, 1, ROUTER, 0.5, 3.0)
    await overlay.until(lambda o: any(s.final for s in o.of(SuggestionUpdate)))
    final = overlay.of(SuggestionUpdate)[-1]
    assert final.source == "knowledge" and 0.2 <= final.latency_s < 1.0
    assert llm.stopped == 1
    await agent.close()


async def test_a_newer_customer_final_cancels_the_suggestion_in_flight(embed, knowledge, topics):
    llm = FakeLlm("I'm sorry about that, let me open a search with the courier now.")
    llm.gate = asyncio.Event()  # the first reply hangs until the second final arrives
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm)
    say(agent, "customer", 1, 1, ROUTER, 0.5, 3.0)
    await overlay.until(lambda o: len(llm.prompts) == 1)
    say(agent, "customer", 2, 2, "actually forget that where is my parcel it has not arrived", 4.0, 7.0)
    llm.gate = None
    await overlay.until(lambda o: any(s.final for s in suggestions_for(o, 2)))
    assert llm.stopped == 1, "the first reply was stopped"
    assert [(s.source, s.final) for s in suggestions_for(overlay, 1)] == [("knowledge", False)]
    assert [(s.source, s.final) for s in suggestions_for(overlay, 2)] == [("knowledge", False), ("llm", True)]
    assert suggestions_for(overlay, 2)[0].knowledge_ids[0] in ("missing-delivery", "delivery-tracking")
    await agent.close()


async def test_agent_finals_update_metrics_and_topic_only(embed, knowledge, topics):
    llm = router_llm()
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm)
    say(agent, "agent", 1, 1, "i can see a charge on your bill for international calls", 0.0, 3.0)
    await overlay.until(lambda o: o.of(TopicUpdate))
    assert {type(u) for u in overlay.updates} == {CallMetricsUpdate, TopicUpdate}
    assert overlay.of(TopicUpdate)[0].topic == "billing_payments"
    assert llm.prompts == []
    await agent.close()


async def test_a_short_customer_answer_is_searched_with_the_one_before(embed, knowledge, topics):
    agent, overlay = make_agent(embed, knowledge, topics)
    say(agent, "customer", 1, 1, "i forgot my password and i am locked out", 0.0, 3.0)
    say(agent, "customer", 2, 2, "yes please", 4.0, 4.6)
    await overlay.until(lambda o: suggestions_for(o, 2))
    assert suggestions_for(overlay, 2)[0].knowledge_ids == ["password-reset"]
    await agent.close()


async def test_close_cancels_work_in_flight_and_silences_the_agent(embed, knowledge, topics):
    llm = router_llm()
    llm.gate = asyncio.Event()
    agent, overlay = make_agent(embed, knowledge, topics, llm=llm)
    say(agent, "customer", 1, 1, ROUTER, 0.5, 3.0)
    await overlay.until(lambda o: len(llm.prompts) == 1)
    await agent.close()
    assert llm.stopped == 1
    count = len(overlay.updates)
    say(agent, "customer", 2, 2, "hello are you there", 4.0, 5.0)
    await asyncio.sleep(0.1)
    assert len(overlay.updates) == count


async def test_the_summary_holds_the_call(embed, knowledge, topics):
    agent, overlay = make_agent(embed, knowledge, topics, llm=FakeLlm("I'm sorry about that, let me check it for you."))
    say(agent, "agent", 1, 1, "thank you for calling how can i help", 0.0, 2.0, [("greeting_other", 0.9)])
    say(agent, "customer", 1, 2, "this is ridiculous my internet has been down for two days", 2.5, 6.0,
        [("complaint", 0.8), ("technical_problem", 0.7)])
    await overlay.until(lambda o: any(s.final for s in o.of(SuggestionUpdate)))
    say(agent, "agent", 2, 3, "i am sorry let me check for an outage in your area", 6.5, 9.0)
    say(agent, "customer", 2, 4, "ok thank you that is really helpful", 9.5, 11.0, [("feedback_praise", 0.6)])
    await overlay.until(lambda o: len([s for s in o.of(SuggestionUpdate) if s.final]) == 2)
    await overlay.until(lambda o: o.of(TopicUpdate))
    summary = agent.summary(15.0)
    json.dumps(summary)

    assert [line["seq"] for line in summary["transcript"]] == [1, 2, 3, 4]
    line = summary["transcript"][1]
    assert line == {
        "seq": 2, "speaker": "customer", "utterance_id": 1,
        "text": "this is ridiculous my internet has been down for two days", "start": 2.5, "end": 6.0,
        "intents": [{"name": "complaint", "score": 0.8}, {"name": "technical_problem", "score": 0.7}],
    }
    intents = summary["intents"]
    assert intents["counts"] == {"greeting_other": 1, "complaint": 1, "technical_problem": 1, "feedback_praise": 1}
    assert intents["by_speaker"]["customer"]["complaint"] == 1
    assert intents["per_utterance"][3] == {"seq": 4, "speaker": "customer", "utterance_id": 2,
                                           "labels": ["feedback_praise"]}

    sentiment = summary["sentiment"]
    assert [s["label"] for s in sentiment["scores"]] == ["negative", "positive"]
    assert sentiment["trend_label"] == "improving" and sentiment["trend"] > 0

    assert summary["topic"]["topic"] == "technical_support"
    assert summary["topic_history"][0]["topic"] == "technical_support"

    metrics = summary["metrics"]
    assert metrics["call_s"] == 15.0 and metrics["talk_s"] == {"agent": 4.5, "customer": 5.0}
    assert metrics["long_silences"] == 0 and metrics["silence_s"] == 5.5

    given = summary["suggestions"]
    assert [(s["utterance_id"], s["source"], s["final"]) for s in given] == [
        (1, "knowledge", False), (1, "llm", True), (2, "knowledge", False), (2, "llm", True)
    ]
    await agent.close()


async def test_unknown_speakers_are_ignored(embed, knowledge, topics):
    agent, overlay = make_agent(embed, knowledge, topics)
    say(agent, "caller", 1, 1, "hello", 0.0, 1.0)
    await asyncio.sleep(0.05)
    assert overlay.updates == [] and agent.summary(1.0)["transcript"] == []
    await agent.close()

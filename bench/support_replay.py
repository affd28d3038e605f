"""The confidence floors swept offline: a live call's finals replayed through a real AssistAgent.

The live bench records every event of each call. Topic and suggestion depend
only on the finals (their words, speakers and order), so each floor value is
tried by feeding the recorded finals, one at a time, to an `AssistAgent`
with the bundled MiniLM encoder, topics and knowledge (no LLM), waiting until
it is idle, and scoring what it emits with bench/support_score.py. An
update's time is the end of the final it answers (live, it came ~1 s later,
after the ASR and the encoder: the replay's topic shares are a little
higher than live ones for the same floor).

The two floors are swept one after the other: the topic floor with no
suggestion floor, then the suggestion floor with the chosen topic floor (the
topic reaches the suggestion only as a +0.05 bonus for entries of the named
topic).
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import numpy as np

from bench.support_score import overall, score_call
from earshot.agents.assist_agent import AssistAgent, AssistConfig
from earshot.agents.knowledge import KnowledgeBase
from earshot.agents.topic import TopicConfig, TopicDetector, TopicList
from earshot.server.protocol import AssistUpdate

TOPIC_FLOORS = tuple(round(0.05 * i, 2) for i in range(0, 11))  # 0 .. 0.5
SUGGESTION_FLOORS = tuple(round(0.05 * i, 2) for i in range(0, 14))  # 0 .. 0.65
REPLAYED = ("topic", "suggestion", "sentiment")  # the kinds the replay makes anew; the rest are the live ones


class CachedEncoder:
    """The bundled sentence encoder, each text encoded once across all the replays."""

    def __init__(self) -> None:
        from earshot.models.encoder import SentenceEncoder

        self._encoder = SentenceEncoder.load()
        self._rows: dict[str, np.ndarray] = {}

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if missing:
            rows = await asyncio.to_thread(self._encoder.encode, missing)
            self._rows.update(zip(missing, np.asarray(rows)))
        return np.stack([self._rows[t] for t in texts])


async def replay_events(
    events: Sequence[dict[str, Any]], topic_floor: float, suggestion_floor: float,
    encoder: CachedEncoder, knowledge: KnowledgeBase, topics: TopicList,
) -> list[dict[str, Any]]:
    """The live events with topic, suggestion and sentiment made anew by an agent with these floors."""
    intents = {(e["speaker"], e["utterance_id"]): e for e in events if e["type"] == "intent" and e.get("final", True)}
    finals = sorted((e for e in events if e["type"] == "final"), key=lambda e: e["seq"])
    made: list[dict[str, Any]] = []
    clock = [0.0]
    agent = AssistAgent(
        embed=encoder.embed,
        knowledge=knowledge,
        topics=TopicDetector(topics, config=TopicConfig(floor=topic_floor)),
        llm=None,
        emit=lambda update: made.append(AssistUpdate("replay", update, clock[0]).to_dict()),
        config=AssistConfig(suggestion_floor=suggestion_floor),
    )
    for final in finals:
        clock[0] = float(final["end"])
        intent = intents.get((final["speaker"], final["utterance_id"]))
        labels = [(label["name"], label["score"]) for label in intent["labels"]] if intent else []
        agent.final(final["speaker"], final["utterance_id"], final["seq"], final["text"], final["start"],
                    final["end"], len(final["text"].split()), labels)
        await agent.idle()
    await agent.close()
    return [e for e in events if e["type"] not in REPLAYED] + [e for e in made if e["type"] in REPLAYED]


async def score_floors(runs: Sequence[dict[str, Any]], topic_floor: float, suggestion_floor: float,
                       encoder: CachedEncoder, knowledge: KnowledgeBase, topics: TopicList) -> dict[str, Any]:
    """Every call replayed at these floors and scored; `runs` are the live bench's per-call records."""
    scored = []
    for run in runs:
        events = await replay_events(run["events"], topic_floor, suggestion_floor, encoder, knowledge, topics)
        scored.append(score_call(run["labels"], run["manifest"], events))
    return {"topic_floor": topic_floor, "suggestion_floor": suggestion_floor, **overall(scored)}


def topic_objective(row: dict[str, Any]) -> float:
    """Share of the call with the right topic shown, less the share with a wrong one (a wrong topic misleads)."""
    return (row["topic_right_share"] or 0.0) - (row["topic_wrong_share"] or 0.0)


def suggestion_objective(row: dict[str, Any]) -> float:
    """F1 of acceptance (expert turns given their entry) and precision (of all suggestions shown, the share accepted)."""
    recall, precision = row["suggestion_acceptance"] or 0.0, row["suggestion_precision"] or 0.0
    return 2 * recall * precision / (recall + precision) if recall + precision else 0.0


def best(rows: Sequence[dict[str, Any]], objective, key: str) -> float:
    """The floor with the highest objective; the lowest such floor on a tie."""
    top = max(objective(r) for r in rows)
    return min(r[key] for r in rows if abs(objective(r) - top) < 1e-9)


async def sweep(runs: Sequence[dict[str, Any]], knowledge: KnowledgeBase, topics: TopicList) -> dict[str, Any]:
    encoder = CachedEncoder()
    await knowledge.embed(encoder.embed)
    await topics.embed(encoder.embed)
    topic_rows = [await score_floors(runs, f, 0.0, encoder, knowledge, topics) for f in TOPIC_FLOORS]
    for row in topic_rows:
        row["objective"] = round(topic_objective(row), 3)
    topic_floor = best(topic_rows, topic_objective, "topic_floor")
    suggestion_rows = [await score_floors(runs, topic_floor, f, encoder, knowledge, topics) for f in SUGGESTION_FLOORS]
    for row in suggestion_rows:
        row["objective"] = round(suggestion_objective(row), 3)
    return {
        "topic": {"objective": topic_objective.__doc__, "rows": topic_rows, "chosen": topic_floor},
        "suggestion": {
            "objective": suggestion_objective.__doc__,
            "rows": suggestion_rows,
            "chosen": best(suggestion_rows, suggestion_objective, "suggestion_floor"),
        },
    }

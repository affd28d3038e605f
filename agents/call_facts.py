"""What one ended call comes to, for a manager: the per-call facts the analytics worker stores.

    assist call's summary (agents/assist_agent.py) --facts_from_summary--> CallFacts
    interview's stored finals                      --facts_from_finals---> CallFacts

Pure functions over JSON the server already stored; the worker (server/analytics_worker.py)
reads, calls these, and writes the result once. No customer words are kept here: intents,
topic, sentiment numbers, talk shares, and the knowledge entries suggested (which are the
knowledge base's words). The transcript stays where it is, sealed.

Whether the agent used a suggestion is judged from the agent's next words: everything the
agent said after the customer's utterance and before the customer spoke again, against the
suggestion's text, by `similarity` (the worker passes the sentence encoder's cosine): used when
it reaches `used_at` (the setting analytics_used_similarity, which says how it was chosen).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

FACTS_VERSION = 1
UNCLEAR_TOPIC = "unclear"  # the topic of a call whose topic was never named with confidence
ESCALATION = "escalation"  # the call_center label that marks an escalation
Similarity = Callable[[str, str], float]


class FactsError(ValueError):
    """A summary that cannot be read as a call (what is missing or wrong)."""


@dataclass(frozen=True)
class CallMeta:
    """What the stream message and the session record say about the call."""

    session_id: str
    mode: str  # assist | interview
    agent: str  # the identity that created the session ("" with auth none)
    team: str
    started_at: float  # unix time
    ended_at: float


@dataclass(frozen=True)
class SuggestionFact:
    utterance_id: int  # the customer's utterance it answered
    knowledge_id: str  # the entry it came from ("" when none)
    score: float  # the entry's match to the customer's words
    source: str  # knowledge | llm
    used: bool  # the agent's next words were close to it
    used_similarity: Optional[float]  # None when the agent said nothing before the customer spoke again


@dataclass(frozen=True)
class Scoring:
    """Intents and topic as judged from one transcript (the live one, or a re-scored one)."""

    source: str  # live | rescored
    model: str  # the Whisper that made the transcript ("" for the live one: the server's)
    intent_counts: dict[str, int]
    topic: Optional[str]
    topic_label: str
    topic_score: Optional[float]


@dataclass(frozen=True)
class CallFacts:
    meta: CallMeta
    handle_time_s: float
    utterances: int
    intents: list[dict[str, Any]]  # per utterance with labels: {"at_s", "speaker", "labels"}
    live: Scoring
    rescored: Optional[Scoring]
    scored_from: str  # live | rescored: what the aggregates and the calls page use
    sentiment: list[dict[str, float]]  # the customer's trajectory: {"at_s", "score"}
    sentiment_mean: Optional[float]
    sentiment_trend: str  # worsening | steady | improving
    talk_share: dict[str, float]  # per speaker
    silence_share: float  # of the call's time, nobody speaking
    overlap_s: float
    interruptions: dict[str, int]
    escalated: bool
    escalation_reason: str  # the topic's label when the call escalated; "" when it did not
    suggestions: list[SuggestionFact] = field(default_factory=list)
    version: int = FACTS_VERSION

    @property
    def scoring(self) -> Scoring:
        return self.rescored if self.scored_from == "rescored" and self.rescored is not None else self.live

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def facts_from_summary(
    meta: CallMeta,
    summary: Mapping[str, Any],
    similarity: Similarity,
    used_at: float,
    rescored: Optional[Scoring] = None,
) -> CallFacts:
    """An assist call's facts from its stored summary; FactsError when the summary is not one."""
    try:
        lines = sorted(summary["transcript"], key=lambda line: int(line["seq"]))
        metrics = summary["metrics"]
        topic = summary.get("topic")
        if topic and topic.get("state", "named") != "named":  # "topic unclear" under the confidence floor
            topic = None
        call_s = float(metrics["call_s"])
        labelled = [
            {"at_s": _r(line["start"]), "speaker": str(line["speaker"]), "labels": [str(i["name"]) for i in line["intents"]]}
            for line in lines
            if line["intents"]
        ]
        end_of = {int(line["seq"]): float(line["end"]) for line in lines}
        sentiment = [
            {"at_s": _r(end_of.get(int(s["seq"]), 0.0)), "score": _r(s["score"])} for s in summary["sentiment"]["scores"]
        ]
        live = Scoring(
            source="live",
            model="",
            intent_counts=_counts(label for line in labelled for label in line["labels"]),
            topic=str(topic["topic"]) if topic else None,
            topic_label=str(topic["label"]) if topic else UNCLEAR_TOPIC,
            topic_score=_r(topic["score"]) if topic else None,
        )
        escalated_at = next((line["at_s"] for line in labelled if ESCALATION in line["labels"]), None)
        facts = CallFacts(
            meta=meta,
            handle_time_s=_r(call_s),
            utterances=len(lines),
            intents=labelled,
            live=live,
            rescored=rescored,
            scored_from="rescored" if rescored is not None else "live",
            sentiment=sentiment,
            sentiment_mean=summary["sentiment"].get("mean"),
            sentiment_trend=str(summary["sentiment"].get("trend_label", "steady")),
            talk_share={str(k): _r(v) for k, v in metrics["talk_share"].items()},
            silence_share=_r(float(metrics["silence_s"]) / call_s) if call_s > 0 else 0.0,
            overlap_s=_r(metrics["overlap_s"]),
            interruptions={str(k): int(v) for k, v in metrics["interruptions"].items()},
            escalated=escalated_at is not None,
            escalation_reason=_topic_at(summary.get("topic_history") or [], escalated_at, live.topic_label),
            suggestions=_suggestions(lines, summary.get("suggestions") or [], similarity, used_at),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FactsError(f"not an assist call summary: {type(exc).__name__}: {exc}") from None
    return facts


def facts_from_finals(
    meta: CallMeta, finals: Sequence[Mapping[str, Any]], audio_s: float, rescored: Optional[Scoring] = None
) -> CallFacts:
    """An interview's facts from its stored finals: its length and how much the candidate spoke."""
    try:
        spoken = sum(max(0.0, float(f["end"]) - float(f["start"])) for f in finals)
    except (KeyError, TypeError, ValueError) as exc:
        raise FactsError(f"not an interview's finals: {type(exc).__name__}: {exc}") from None
    live = Scoring("live", "", {}, None, UNCLEAR_TOPIC, None)
    return CallFacts(
        meta=meta,
        handle_time_s=_r(audio_s),
        utterances=len(finals),
        intents=[],
        live=live,
        rescored=rescored,
        scored_from="rescored" if rescored is not None else "live",
        sentiment=[],
        sentiment_mean=None,
        sentiment_trend="steady",
        talk_share={"candidate": 1.0} if spoken else {},
        silence_share=_r(1.0 - min(spoken / audio_s, 1.0)) if audio_s > 0 else 0.0,
        overlap_s=0.0,
        interruptions={},
        escalated=False,
        escalation_reason="",
    )


EXPORT_COLUMNS = (  # export_row's keys, in the order a CSV shows them
    "session_id", "mode", "agent", "team", "started_at", "ended_at", "handle_time_s", "utterances",
    "topic", "topic_label", "topic_score", "intents", "escalated", "escalation_reason",
    "sentiment_mean", "sentiment_trend", "agent_talk_share", "customer_talk_share", "silence_share",
    "interruptions", "suggestions_shown", "suggestions_used", "scored_from",
)


def export_row(facts: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row of stored facts (their to_dict()), for CSV and BI tools."""
    meta = facts["meta"]
    scoring = facts["rescored"] if facts["scored_from"] == "rescored" and facts.get("rescored") else facts["live"]
    suggestions = facts.get("suggestions") or []
    return {
        "session_id": meta["session_id"],
        "mode": meta["mode"],
        "agent": meta["agent"],
        "team": meta["team"],
        "started_at": meta["started_at"],
        "ended_at": meta["ended_at"],
        "handle_time_s": facts["handle_time_s"],
        "utterances": facts["utterances"],
        "topic": scoring["topic"] or "",
        "topic_label": scoring["topic_label"],
        "topic_score": scoring["topic_score"],
        "intents": ";".join(sorted(scoring["intent_counts"])),
        "escalated": facts["escalated"],
        "escalation_reason": facts["escalation_reason"],
        "sentiment_mean": facts["sentiment_mean"],
        "sentiment_trend": facts["sentiment_trend"],
        "agent_talk_share": facts["talk_share"].get("agent"),
        "customer_talk_share": facts["talk_share"].get("customer"),
        "silence_share": facts["silence_share"],
        "interruptions": sum(facts["interruptions"].values()),
        "suggestions_shown": len(suggestions),
        "suggestions_used": sum(1 for s in suggestions if s["used"]),
        "scored_from": facts["scored_from"],
    }


def _suggestions(
    lines: Sequence[Mapping[str, Any]], shown: Sequence[Mapping[str, Any]], similarity: Similarity, used_at: float
) -> list[SuggestionFact]:
    """The last suggestion shown for each customer utterance, and whether the agent's next words used it."""
    last: dict[int, Mapping[str, Any]] = {}
    for update in shown:
        last[int(update["utterance_id"])] = update  # a later one (the LLM's, or the final) replaces it
    facts = []
    for utterance_id, update in last.items():
        if update.get("withheld"):  # below the confidence floor: nothing was shown
            continue
        reply = _agent_reply(lines, utterance_id)
        score = similarity(str(update["text"]), reply) if reply else None
        ids = update.get("knowledge_ids") or []
        facts.append(
            SuggestionFact(
                utterance_id=utterance_id,
                knowledge_id=str(ids[0]) if ids else "",
                score=_r(update["score"]),
                source=str(update["source"]),
                used=score is not None and score >= used_at,
                used_similarity=_r(score) if score is not None else None,
            )
        )
    return facts


def _agent_reply(lines: Sequence[Mapping[str, Any]], utterance_id: int) -> str:
    """What the agent said after the customer's utterance `utterance_id`, until the customer spoke again."""
    words: list[str] = []
    after = False
    for line in lines:
        if line["speaker"] == "customer":
            if after:
                break
            after = int(line["utterance_id"]) == utterance_id
        elif after and line["speaker"] == "agent":
            words.append(str(line["text"]))
    return " ".join(words)


def _topic_at(history: Sequence[Mapping[str, Any]], at_s: Optional[float], current_label: str) -> str:
    if at_s is None:
        return ""
    label = ""
    for update in history:
        if float(update.get("at_s", 0.0)) <= at_s + 5.0:  # a topic named just after the words still explains them
            label = str(update["label"]) if update.get("state", "named") == "named" else ""
    return label or current_label


def _counts(labels: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _r(value: Any) -> float:
    return round(float(value), 3)

"""The scripted support calls (`bench/support_calls/calls.json`) are well formed.

Pure and fast: reads three JSON files, starts nothing. `call_set_problems` lists
every problem it finds; the set itself must have none, and each check is shown
to fire on a copy broken on purpose. `labels.json` says nothing about which
speaker a `call_center` label is for (the data card has agent lines too), so
labels are checked on both speakers against the whole set.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CALLS = REPO / "bench" / "support_calls" / "calls.json"
LABELS = REPO / "models" / "intent_data" / "labels.json"
TOPICS = REPO / "agents" / "assist_data" / "topics.json"
KNOWLEDGE = REPO / "agents" / "assist_data" / "knowledge.json"

CALL_COUNT = 6
ESCALATION_CALL = "angry-escalation"
SPEAKERS = {"agent", "customer"}
SENTIMENTS = {"negative", "neutral", "positive"}
MIN_TURNS, MAX_TURNS = 14, 40
MAX_RUN = 3  # turns in a row by one speaker
WORDS_PER_MINUTE = 150
MIN_MINUTES, MAX_MINUTES = 1.0, 3.0


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def spoken_words(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9']+", text))


def call_set_problems(doc, labels: set[str], topics: set[str], knowledge: set[str]) -> list[str]:
    problems: list[str] = []
    if doc.get("version") != 1:
        problems.append("version is not 1")
    if not isinstance(doc.get("note"), str) or not doc["note"].strip():
        problems.append("note missing")
    calls = doc.get("calls", [])
    if len(calls) != CALL_COUNT:
        problems.append(f"{len(calls)} calls, not {CALL_COUNT}")
    ids = [call.get("id") for call in calls]
    if len(set(ids)) != len(ids):
        problems.append(f"duplicate call ids: {ids}")
    if ESCALATION_CALL not in ids:
        problems.append(f"no call {ESCALATION_CALL!r}")
    for call in calls:
        name = call.get("id")
        for key in ("id", "title", "scenario", "topic"):
            if not isinstance(call.get(key), str) or not call[key].strip():
                problems.append(f"{name}: {key} missing")
        if call.get("topic") not in topics:
            problems.append(f"{name}: unknown topic {call.get('topic')!r}")
        turns = call.get("turns", [])
        if not MIN_TURNS <= len(turns) <= MAX_TURNS:
            problems.append(f"{name}: {len(turns)} turns, not {MIN_TURNS}-{MAX_TURNS}")
        run, previous = 0, None
        for index, turn in enumerate(turns):
            where = f"{name} turn {index}"
            speaker = turn.get("speaker")
            if speaker not in SPEAKERS:
                problems.append(f"{where}: speaker {speaker!r}")
            run = run + 1 if speaker == previous else 1
            previous = speaker
            if run > MAX_RUN:
                problems.append(f"{where}: {run} turns in a row by {speaker}")
            if not isinstance(turn.get("text"), str) or not turn["text"].strip():
                problems.append(f"{where}: no text")
            intents = turn.get("intents")
            if not isinstance(intents, list) or len(set(intents)) != len(intents):
                problems.append(f"{where}: intents {intents!r} is not a list of distinct labels")
            else:
                problems += [f"{where}: unknown intent {label!r}" for label in intents if label not in labels]
            if turn.get("sentiment") not in SENTIMENTS:
                problems.append(f"{where}: sentiment {turn.get('sentiment')!r}")
            if "suggestion" in turn:
                if speaker != "customer":
                    problems.append(f"{where}: suggestion on a turn by {speaker}")
                elif turn["suggestion"] is not None and turn["suggestion"] not in knowledge:
                    problems.append(f"{where}: unknown suggestion {turn['suggestion']!r}")
        minutes = sum(spoken_words(turn.get("text") or "") for turn in turns) / WORDS_PER_MINUTE
        if not MIN_MINUTES <= minutes <= MAX_MINUTES:
            problems.append(f"{name}: {minutes:.2f} spoken minutes, not {MIN_MINUTES}-{MAX_MINUTES}")
        customer_intents = [t for t in turns if t.get("speaker") == "customer" and t.get("intents")]
        if not customer_intents:
            problems.append(f"{name}: no customer turn has an intent")
        if name == ESCALATION_CALL and "escalation" in labels:
            if not any("escalation" in (t.get("intents") or []) for t in customer_intents):
                problems.append(f"{name}: no customer turn is labelled escalation")
    return problems


@pytest.fixture(scope="module")
def references() -> tuple[set[str], set[str], set[str]]:
    labels = set(load(LABELS)["call_center"])
    topics = {topic["name"] for topic in load(TOPICS)}
    knowledge = {entry["id"] for entry in load(KNOWLEDGE)}
    return labels, topics, knowledge


@pytest.fixture(scope="module")
def calls_doc():
    return load(CALLS)


def test_the_call_set_has_no_problems(calls_doc, references):
    assert call_set_problems(calls_doc, *references) == []


def test_the_file_is_one_json_document():
    with pytest.raises(json.JSONDecodeError):
        json.loads(CALLS.read_text(encoding="utf-8") + "{")
    assert isinstance(load(CALLS), dict)


def _first_customer(call):
    return next(t for t in call["turns"] if t["speaker"] == "customer")


def _drop_call(doc):
    doc["calls"].pop()


def _duplicate_id(doc):
    doc["calls"][1]["id"] = doc["calls"][0]["id"]


def _unknown_label(doc):
    _first_customer(doc["calls"][0])["intents"].append("refund_request")


def _unknown_topic(doc):
    doc["calls"][0]["topic"] = "Billing & payments"


def _unknown_suggestion(doc):
    _first_customer(doc["calls"][0])["suggestion"] = "no-such-entry"


def _agent_suggestion(doc):
    doc["calls"][0]["turns"][0]["suggestion"] = "thanks-close"


def _too_few_turns(doc):
    doc["calls"][0]["turns"] = doc["calls"][0]["turns"][:MIN_TURNS - 1]


def _too_many_turns(doc):
    turns = doc["calls"][0]["turns"]
    while len(turns) <= MAX_TURNS:
        turns += copy.deepcopy(turns[:2])


def _long_monologue(doc):
    turns = doc["calls"][0]["turns"]
    agent = next(t for t in turns if t["speaker"] == "agent")
    turns[1:1] = [copy.deepcopy(agent) for _ in range(MAX_RUN)]


def _too_short(doc):
    for turn in doc["calls"][0]["turns"]:
        turn["text"] = "Okay."


def _too_long(doc):
    for turn in doc["calls"][0]["turns"]:
        turn["text"] = " ".join([turn["text"]] * 3)


def _no_customer_intent(doc):
    for turn in doc["calls"][0]["turns"]:
        if turn["speaker"] == "customer":
            turn["intents"] = []


def _no_escalation(doc):
    call = next(c for c in doc["calls"] if c["id"] == ESCALATION_CALL)
    for turn in call["turns"]:
        turn["intents"] = [label for label in turn["intents"] if label != "escalation"] or ["complaint"]


def _bad_sentiment(doc):
    doc["calls"][0]["turns"][0]["sentiment"] = "angry"


def _bad_speaker(doc):
    doc["calls"][0]["turns"][0]["speaker"] = "supervisor"


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_drop_call, "calls, not 6"),
        (_duplicate_id, "duplicate call ids"),
        (_unknown_label, "unknown intent 'refund_request'"),
        (_unknown_topic, "unknown topic"),
        (_unknown_suggestion, "unknown suggestion 'no-such-entry'"),
        (_agent_suggestion, "suggestion on a turn by agent"),
        (_too_few_turns, "turns, not 14-40"),
        (_too_many_turns, "turns, not 14-40"),
        (_long_monologue, "4 turns in a row by agent"),
        (_too_short, "spoken minutes"),
        (_too_long, "spoken minutes"),
        (_no_customer_intent, "no customer turn has an intent"),
        (_no_escalation, "no customer turn is labelled escalation"),
        (_bad_sentiment, "sentiment 'angry'"),
        (_bad_speaker, "speaker 'supervisor'"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else "",
)
def test_each_check_fires_on_a_broken_copy(calls_doc, references, breakage, expected):
    broken = copy.deepcopy(calls_doc)
    breakage(broken)
    problems = call_set_problems(broken, *references)
    assert any(expected in problem for problem in problems), problems

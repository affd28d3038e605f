"""The intent stage and the final/intent pairing, with a scripted classifier.

The classifier here is a stand-in so a failure and a slow call can be
produced on demand; the real head is tested in test_intent.py and over
WebRTC in test_assist_call.py and test_interview_call.py.
"""

from __future__ import annotations

import asyncio

import pytest

from earshot.models.intent import IntentPrediction, IntentScore
from earshot.server import protocol
from earshot.server.intent_stage import FinalsWithIntents, IntentOptions, IntentStage


def prediction(text: str, label_set: str) -> IntentPrediction:
    name = "asks_to_repeat" if "again" in text else "answering"
    return IntentPrediction(label_set, (IntentScore(name, 0.9),), {name: 0.9}, 0.004)


class Sink:
    def __init__(self) -> None:
        self.events: list[protocol.Event] = []

    def __call__(self, event: protocol.Event) -> None:
        self.events.append(event)


async def classify_ok(text: str, label_set: str) -> IntentPrediction:
    await asyncio.sleep(0.01)
    return prediction(text, label_set)


@pytest.mark.asyncio
async def test_finals_are_classified_in_order_with_their_speaker():
    sink = Sink()
    stage = IntentStage("s1", IntentOptions(classify_ok, "call_center"), sink, speaker="customer")
    stage.final(1, "could you say that again", 1.0)
    stage.final(2, "my answer is about caching", 2.0)
    await stage.close()
    intents = [e for e in sink.events if isinstance(e, protocol.Intent)]
    assert [i.utterance_id for i in intents] == [1, 2]
    assert intents[0].labels == [protocol.IntentLabel("asks_to_repeat", 0.9)]
    assert all(i.final and i.speaker == "customer" and i.label_set == "call_center" for i in intents)
    assert intents[0].to_dict()["labels"] == [{"name": "asks_to_repeat", "score": 0.9}]


@pytest.mark.asyncio
async def test_a_failing_classifier_reports_intent_failed_and_keeps_going():
    calls = []

    async def flaky(text: str, label_set: str) -> IntentPrediction:
        calls.append(text)
        if text == "boom":
            raise RuntimeError("encoder crashed")
        return prediction(text, label_set)

    sink = Sink()
    stage = IntentStage("s1", IntentOptions(flaky, "interview"), sink)
    stage.final(1, "boom", 1.0)
    stage.final(2, "say it again", 2.0)
    await stage.close()
    assert calls == ["boom", "say it again"]
    error, intent = sink.events
    assert isinstance(error, protocol.Error) and error.code == "intent_failed"
    assert error.detail == {"utterance_id": 1, "final": True, "speaker": ""}
    assert "encoder crashed" not in error.message  # the client hears that it failed; the reason goes to the log
    assert isinstance(intent, protocol.Intent) and intent.utterance_id == 2


@pytest.mark.asyncio
async def test_partials_only_when_asked_and_a_final_replaces_its_waiting_partials():
    sink = Sink()
    off = IntentStage("s1", IntentOptions(classify_ok, "interview"), sink)
    off.partial(1, "could you say that", 0.5)
    await off.close()
    assert sink.events == []

    gate = asyncio.Event()
    seen: list[str] = []

    async def gated(text: str, label_set: str) -> IntentPrediction:
        seen.append(text)
        await gate.wait()
        return prediction(text, label_set)

    stage = IntentStage("s1", IntentOptions(gated, "interview", partials=True), sink)
    stage.partial(1, "so my first", 0.4)  # starts at once and blocks on the gate
    await asyncio.sleep(0)
    stage.partial(1, "so my first point", 0.8)  # waits...
    stage.partial(1, "so my first point is", 1.2)  # ...and is replaced by this one
    stage.partial(1, "so my first point is", 1.6)  # unchanged words: not classified again
    stage.partial(2, "ok", 1.7)  # too few words
    stage.final(1, "so my first point is caching", 2.0)  # replaces the waiting partial
    gate.set()
    await stage.close()
    assert seen == ["so my first", "so my first point is caching"]
    assert [(e.final, e.text) for e in sink.events] == [(False, "so my first"), (True, "so my first point is caching")]


@pytest.mark.asyncio
async def test_an_empty_final_gets_an_intent_with_no_labels():
    sink = Sink()
    stage = IntentStage("s1", IntentOptions(classify_ok, "interview"), sink)
    stage.final(3, "  ", 1.0)
    await stage.close()
    (intent,) = sink.events
    assert intent.utterance_id == 3 and intent.labels == [] and intent.scores == {}


def final(utterance_id: int, speaker: str = "") -> protocol.Final:
    return protocol.Final("s1", utterance_id, utterance_id, "text", 0.0, 1.0, [], 1.0, 1.2, 0.0, 0.1, speaker)


def test_finals_wait_for_their_intent_or_its_failure():
    delivered = []
    join = FinalsWithIntents(lambda f, labels: delivered.append((f.speaker, f.utterance_id, labels)), intents_follow=True)
    join.on_event(final(1, "agent"))
    join.on_event(final(1, "customer"))
    assert delivered == []
    label = protocol.IntentLabel("complaint", 0.8)
    join.on_event(protocol.Intent("s1", 1, "call_center", True, "text", [label], {}, 0.0, 1.2, "customer"))
    assert delivered == [("customer", 1, (label,))]
    join.on_event(protocol.Error("s1", "intent_failed", "x", {"utterance_id": 1, "final": True, "speaker": "agent"}))
    assert delivered[-1] == ("agent", 1, ())
    # A partial's intent releases nothing.
    join.on_event(final(2))
    join.on_event(protocol.Intent("s1", 2, "interview", False, "text", [], {}, 0.0, 1.2))
    assert len(delivered) == 2


def test_without_intents_finals_pass_straight_through():
    delivered = []
    join = FinalsWithIntents(lambda f, labels: delivered.append((f.utterance_id, labels)), intents_follow=False)
    join.on_event(final(4))
    assert delivered == [(4, ())]

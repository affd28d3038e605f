"""The support-call bench's pure parts: where voiced turns go on the clock, and how the overlay's events are scored.

Fast: no Piper, no server. The voicing and the live pass run for real in
tests/test_assist_floor_call.py and bench/support_bench.py.
"""

from __future__ import annotations

import numpy as np

from bench.support_score import align, overall, score_call, topic_timeline
from bench.support_voicing import BACKCHANNELS, LEAD_S, SAME_SIDE_GAP_S, SPEAKERS, place_turns
from earshot.models.audio import SAMPLE_RATE


def seconds(s: float) -> np.ndarray:
    return np.ones(int(s * SAMPLE_RATE), dtype=np.int16)


BACK = {f"{s}:{w}": seconds(0.4) for s in SPEAKERS for w in BACKCHANNELS}


def test_turns_follow_each_other_with_gaps_and_a_cut_off_turn_is_talked_over():
    turns = [
        {"speaker": "agent", "text": "Hello, how can I help?"},
        {"speaker": "customer", "text": "My bill is wrong."},
        {"speaker": "agent", "text": "I can book the first slot, which is, um-"},
        {"speaker": "customer", "text": "No. I want a supervisor."},
        {"speaker": "customer", "text": "Now."},
    ]
    spoken = [seconds(2.0), seconds(1.5), seconds(2.5), seconds(1.5), seconds(0.5)]
    placed = [p for p, _ in place_turns(turns, spoken, BACK, seed="t")]
    assert placed[0].start == LEAD_S and [p.turn for p in placed] == [0, 1, 2, 3, 4]
    assert 0.25 <= placed[1].start - placed[0].end <= 0.9
    assert placed[3].start < placed[2].end, "the customer cuts in on the broken-off turn"
    assert placed[4].start >= placed[3].end + SAME_SIDE_GAP_S, "one side never overlaps itself"
    assert all(abs((p.end - p.start) - len(pcm) / SAMPLE_RATE) < 1e-3 for p, pcm in zip(placed, spoken))


def test_a_long_turn_may_get_a_backchannel_from_the_listener_inside_it():
    turns = [{"speaker": "agent", "text": "Go on."}] + [{"speaker": "customer", "text": "A long story."}]
    seen = 0
    for seed in range(20):
        placed = [p for p, _ in place_turns(turns, [seconds(1.0), seconds(9.0)], BACK, seed=str(seed))]
        for back in (p for p in placed if p.backchannel):
            seen += 1
            assert back.speaker == "agent" and back.text in BACKCHANNELS
            assert placed[1].start < back.start and back.end < placed[1].end - 0.5
    assert 3 <= seen <= 17, seen  # about half the seeds


def call_and_manifest():
    call = {
        "id": "t", "topic": "billing_payments",
        "turns": [
            {"speaker": "agent", "text": "Hi.", "intents": ["greeting_other"], "sentiment": "neutral"},
            {"speaker": "customer", "text": "Charged twice.", "intents": ["billing_inquiry"], "sentiment": "negative",
             "suggestion": "double-charge"},
            {"speaker": "customer", "text": "Fine, thanks.", "intents": ["greeting_other"], "sentiment": "positive",
             "suggestion": None},
        ],
    }
    manifest = {"turns": [
        {"speaker": "agent", "text": "Hi.", "start": 0.5, "end": 1.5, "turn": 0},
        {"speaker": "customer", "text": "Charged twice.", "start": 2.0, "end": 4.0, "turn": 1},
        {"speaker": "agent", "text": "Okay.", "start": 3.0, "end": 3.4, "turn": None},
        {"speaker": "customer", "text": "Fine, thanks.", "start": 8.0, "end": 9.0, "turn": 2},
    ]}
    return call, manifest


def final(speaker, uid, start, end, seq):
    return {"type": "final", "speaker": speaker, "utterance_id": uid, "start": start, "end": end, "seq": seq,
            "text": "x"}


def test_finals_go_to_the_turn_they_overlap_most_on_their_side():
    _, manifest = call_and_manifest()
    finals = [final("agent", 1, 0.6, 1.4, 1), final("agent", 2, 3.05, 3.3, 2), final("customer", 1, 2.1, 3.9, 3),
              final("customer", 2, 9.5, 9.8, 4), final("customer", 3, 20.0, 21.0, 5)]
    matched = align(finals, manifest["turns"])
    assert matched == {("agent", 1): 0, ("agent", 2): 2, ("customer", 1): 1, ("customer", 2): 3}  # 20 s: no turn


def test_a_call_is_scored_on_intents_topic_sentiment_and_suggestions():
    call, manifest = call_and_manifest()
    events = [
        final("agent", 1, 0.6, 1.4, 1), final("customer", 1, 2.1, 3.9, 2), final("agent", 2, 3.05, 3.3, 3),
        final("customer", 2, 8.1, 8.9, 4),
        {"type": "intent", "speaker": "agent", "utterance_id": 1, "final": True, "labels": [{"name": "greeting_other"}]},
        {"type": "intent", "speaker": "customer", "utterance_id": 1, "final": True,
         "labels": [{"name": "billing_inquiry"}, {"name": "complaint"}]},
        {"type": "intent", "speaker": "customer", "utterance_id": 2, "final": True, "labels": []},
        {"type": "topic", "topic": "", "state": "unclear", "emitted_audio_s": 1.6},
        {"type": "topic", "topic": "billing_payments", "state": "named", "emitted_audio_s": 4.5},
        {"type": "sentiment", "utterance_id": 1, "trend_label": "steady"},
        {"type": "sentiment", "utterance_id": 2, "trend_label": "improving"},
        {"type": "suggestion", "utterance_id": 1, "text": "Sorry.", "knowledge_ids": ["double-charge"], "score": 0.7},
        {"type": "suggestion", "utterance_id": 2, "text": "", "knowledge_ids": [], "score": 0.2, "withheld": True},
    ]
    scored = score_call(call, manifest, events)
    # Turn 0: greeting right; turn 1: billing right, complaint extra; turn 2: greeting missed.
    assert scored["intent_micro_f1"] == round(2 * 2 / (2 * 2 + 1 + 1), 3)
    assert scored["finals_on_backchannels"] == 1
    topic = scored["topic"]
    assert topic["at_end"] == "billing_payments" and topic["right_at_end"] and not topic["wrong_at_end"]
    span = 9.0 - 0.5
    assert topic["right_share"] == round((9.0 - 4.5) / span, 3) and topic["unclear_share"] == round(2.9 / span, 3)
    assert scored["sentiment"]["labelled_end_trend"] == "improving" and scored["sentiment"]["end_agrees"]
    assert scored["sentiment"]["updates_agreeing"] == 1.0  # steady after one turn, improving after two
    suggestions = scored["suggestions"]
    assert (suggestions["accepted"], suggestions["expert_turns"], suggestions["shown_on_null"]) == (1, 1, 0)
    pooled = overall([scored, scored])
    assert pooled["suggestion_acceptance"] == 1.0 and pooled["suggestion_precision"] == 1.0
    assert pooled["topic_right_at_end"] == 1.0


def test_the_topic_timeline_reads_unclear_as_no_topic():
    events = [{"type": "topic", "topic": "a", "emitted_audio_s": 3.0},
              {"type": "topic", "topic": "", "state": "unclear", "emitted_audio_s": 1.0}]
    assert topic_timeline(events) == [(1.0, None), (3.0, "a")]

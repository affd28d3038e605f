"""Scoring the assist overlay's events on one voiced support call against the call's labels.

Pure: events (the overlay's JSON events, as the page gets them) and the call's
labels and voicing manifest in, numbers out. The live bench and the offline
floor sweep (bench/support_replay.py) score through the same functions.

* Finals are matched to turns by speaker and time: the turn of the same side
  whose voice overlaps the final most (else the nearest within 1 s). A final
  may match a backchannel ("mm-hmm" over the other side's turn), which has no
  labels: it is counted, not scored.
* Intent micro-F1: per labelled turn, the union of its finals' intent labels
  against the turn's labels (a turn with no final misses all its labels).
* Topic: the topic shown when the call ends, and the share of the call (first
  voice to last) during which the right topic was shown (and a wrong one, and
  "topic unclear").
* Sentiment trend: the overlay's trend label when the call ends against the
  same trend (agents/sentiment.py: fitted change over the last five, steady
  within 0.15) of the labelled customer sentiments (negative -1, neutral 0,
  positive 1); also, at every sentiment update, against the labelled trend
  over the customer turns heard so far.
* Suggestions: for each customer turn with a `suggestion` label, the
  suggestion on screen after it (the last one for its last final): accepted
  when its best entry is the labelled one; for a null label, whether one was
  shown anyway; also how often one is shown on customer turns that want none
  (no `suggestion` key) and on backchannels.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional, Sequence

from earshot.agents.sentiment import SentimentConfig, trend_of

SENTIMENT_VALUE = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
NEAREST_WITHIN_S = 1.0


def trend_label(scores: Sequence[float], config: SentimentConfig = SentimentConfig()) -> str:
    trend = trend_of(list(scores)[-config.window:])
    return "improving" if trend >= config.steady_band else "worsening" if trend <= -config.steady_band else "steady"


def align(finals: Sequence[dict[str, Any]], placed: Sequence[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """(speaker, utterance_id) of each final -> the index in `placed` of its turn or backchannel (unmatched: absent)."""
    matched = {}
    for final in finals:
        best, best_key = None, None
        for i, p in enumerate(placed):
            if p["speaker"] != final["speaker"]:
                continue
            overlap = min(final["end"], p["end"]) - max(final["start"], p["start"])
            key = overlap if overlap > 0 else -min(abs(final["start"] - p["end"]), abs(p["start"] - final["end"]))
            if best_key is None or key > best_key:
                best, best_key = i, key
        if best is not None and best_key > -NEAREST_WITHIN_S:
            matched[(final["speaker"], final["utterance_id"])] = best
    return matched


def topic_timeline(events: Sequence[dict[str, Any]]) -> list[tuple[float, Optional[str]]]:
    """(time on the call's clock, topic shown from then: a name, or None for 'topic unclear'), in order."""
    shown = []
    for event in events:
        if event["type"] == "topic":
            named = event.get("state", "named") == "named" and event["topic"]
            shown.append((float(event["emitted_audio_s"]), event["topic"] if named else None))
    return sorted(shown, key=lambda item: item[0])


def score_call(call: dict[str, Any], manifest: dict[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers for one call; `counts` holds what adds up across calls."""
    turns, placed = call["turns"], manifest["turns"]
    finals = [e for e in events if e["type"] == "final"]
    matched = align(finals, placed)
    turn_finals: dict[int, list[dict[str, Any]]] = defaultdict(list)
    backchannel_finals = unmatched_finals = 0
    for final in sorted(finals, key=lambda f: f["end"]):
        where = matched.get((final["speaker"], final["utterance_id"]))
        if where is None:
            unmatched_finals += 1
        elif placed[where]["turn"] is None:
            backchannel_finals += 1
        else:
            turn_finals[placed[where]["turn"]].append(final)

    # --- intents ---
    labels_of = {(e["speaker"], e["utterance_id"]): {label["name"] for label in e["labels"]}
                 for e in events if e["type"] == "intent" and e.get("final", True)}
    tp = fp = fn = 0
    by_label: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    for index, turn in enumerate(turns):
        said: set[str] = set()
        for final in turn_finals.get(index, []):
            said |= labels_of.get((final["speaker"], final["utterance_id"]), set())
        gold = set(turn["intents"])
        for name in said & gold:
            by_label[name]["tp"] += 1
        for name in said - gold:
            by_label[name]["fp"] += 1
        for name in gold - said:
            by_label[name]["fn"] += 1
        tp, fp, fn = tp + len(said & gold), fp + len(said - gold), fn + len(gold - said)

    # --- topic ---
    voiced = [p for p in placed]
    span = (min(p["start"] for p in voiced), max(p["end"] for p in voiced))
    timeline = topic_timeline(events)
    right = wrong = unclear = 0.0
    for (at, topic), following in zip(timeline, [*(t for t, _ in timeline[1:]), span[1]]):
        start, stop = max(at, span[0]), min(max(following, at), span[1])
        if stop <= start:
            continue
        if topic is None:
            unclear += stop - start
        elif topic == call["topic"]:
            right += stop - start
        else:
            wrong += stop - start
    length = span[1] - span[0]
    end_topic = timeline[-1][1] if timeline else None

    # --- sentiment ---
    sentiments = [e for e in events if e["type"] == "sentiment"]
    labelled = [SENTIMENT_VALUE[t["sentiment"]] for t in turns if t["speaker"] == "customer"]
    customer_turn_rank = {i: n for n, i in enumerate(i for i, t in enumerate(turns) if t["speaker"] == "customer")}
    agree_events = 0
    for event in sentiments:
        where = matched.get(("customer", event["utterance_id"]))
        turn = placed[where]["turn"] if where is not None else None
        if turn is None:
            continue  # a backchannel or unmatched final: no labelled turn to compare with
        agree_events += event["trend_label"] == trend_label(labelled[: customer_turn_rank[turn] + 1])
    scored_events = sum(
        1 for e in sentiments
        if matched.get(("customer", e["utterance_id"])) is not None
        and placed[matched[("customer", e["utterance_id"])]]["turn"] is not None
    )
    end_trend = sentiments[-1]["trend_label"] if sentiments else "steady"

    # --- suggestions ---
    shown_for: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "suggestion":
            shown_for[event["utterance_id"]] = event  # the last word on each customer final
    expert = accepted = null_turns = null_shown = unheard = no_need = no_need_shown = 0
    misses = []
    for index, turn in enumerate(turns):
        if turn["speaker"] != "customer":
            continue
        heard = turn_finals.get(index, [])
        shown = shown_for.get(heard[-1]["utterance_id"]) if heard else None
        on_screen = shown is not None and not shown.get("withheld", False) and bool(shown.get("text"))
        if "suggestion" not in turn:  # a name, "yes please", a goodbye: nothing to suggest
            no_need += 1
            no_need_shown += on_screen
            continue
        unheard += not heard
        best = shown["knowledge_ids"][0] if on_screen and shown["knowledge_ids"] else None
        if turn["suggestion"] is None:
            null_turns += 1
            null_shown += on_screen
        else:
            expert += 1
            accepted += best == turn["suggestion"]
            if best != turn["suggestion"]:
                misses.append({"turn": index, "want": turn["suggestion"], "shown": best,
                               "score": shown["score"] if shown else None})
    backchannel_shown = sum(
        1 for (speaker, uid), where in matched.items()
        if speaker == "customer" and placed[where]["turn"] is None
        and uid in shown_for and not shown_for[uid].get("withheld", False) and shown_for[uid].get("text")
    )

    return {
        "call": call["id"],
        "finals": len(finals),
        "finals_on_backchannels": backchannel_finals,
        "finals_unmatched": unmatched_finals,
        "turns_unheard": sum(1 for i in range(len(turns)) if i not in turn_finals),
        "intent_micro_f1": f1(tp, fp, fn),
        "topic": {
            "labelled": call["topic"],
            "at_end": end_topic,
            "right_at_end": end_topic == call["topic"],
            "wrong_at_end": end_topic is not None and end_topic != call["topic"],
            "right_share": ratio(right, length),
            "wrong_share": ratio(wrong, length),
            "unclear_share": ratio(unclear, length),
            "changes": len(timeline),
        },
        "sentiment": {
            "labelled_end_trend": trend_label(labelled),
            "overlay_end_trend": end_trend,
            "end_agrees": end_trend == trend_label(labelled),
            "updates_agreeing": ratio(agree_events, scored_events),
        },
        "suggestions": {
            "expert_turns": expert,
            "accepted": accepted,
            "acceptance": ratio(accepted, expert),
            "null_turns": null_turns,
            "shown_on_null": null_shown,
            "shown_on_null_share": ratio(null_shown, null_turns),
            "no_need_turns": no_need,
            "shown_on_no_need": no_need_shown,
            "shown_on_backchannels": backchannel_shown,
            "turns_unheard": unheard,
            "misses": misses,
        },
        "counts": {
            "tp": tp, "fp": fp, "fn": fn, "by_label": dict(by_label),
            "topic_right_s": right, "topic_wrong_s": wrong, "topic_unclear_s": unclear, "span_s": length,
            "sentiment_updates": scored_events, "sentiment_agreeing": agree_events,
            "expert": expert, "accepted": accepted, "null": null_turns, "null_shown": null_shown,
            "no_need": no_need, "no_need_shown": no_need_shown, "backchannel_shown": backchannel_shown,
            # Every suggestion on screen after a customer turn or backchannel: wanted or not.
            "shown": accepted + len([m for m in misses if m["shown"]]) + null_shown + no_need_shown + backchannel_shown,
        },
    }


def overall(calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The calls' numbers pooled (micro: counts added up, then divided)."""
    total: dict[str, float] = defaultdict(float)
    for scored in calls:
        for key, value in scored["counts"].items():
            if key != "by_label":
                total[key] += value
    n = len(calls)
    return {
        "calls": n,
        "intent_micro_f1": f1(int(total["tp"]), int(total["fp"]), int(total["fn"])),
        "topic_right_at_end": ratio(sum(c["topic"]["right_at_end"] for c in calls), n),
        "topic_wrong_at_end": ratio(sum(c["topic"]["wrong_at_end"] for c in calls), n),
        "topic_right_share": ratio(total["topic_right_s"], total["span_s"]),
        "topic_wrong_share": ratio(total["topic_wrong_s"], total["span_s"]),
        "topic_unclear_share": ratio(total["topic_unclear_s"], total["span_s"]),
        "sentiment_end_trend_agreement": ratio(sum(c["sentiment"]["end_agrees"] for c in calls), n),
        "sentiment_updates_agreeing": ratio(total["sentiment_agreeing"], total["sentiment_updates"]),
        "suggestion_acceptance": ratio(total["accepted"], total["expert"]),
        "suggestion_shown_on_null_share": ratio(total["null_shown"], total["null"]),
        # Of all the suggestions shown (after any customer turn or backchannel), the share an expert would
        # accept: one shown where none was wanted replaces the one on screen, so it counts against.
        "suggestion_precision": ratio(total["accepted"], total["shown"]),
        # Customer turns that want no suggestion (a name, "yes please") and backchannels: shown anyway.
        "suggestion_shown_on_no_need_share": ratio(total["no_need_shown"], total["no_need"]),
        "suggestions_on_backchannels": int(total["backchannel_shown"]),
        "expert_turns": int(total["expert"]),
        "null_turns": int(total["null"]),
    }


def f1(tp: int, fp: int, fn: int) -> Optional[float]:
    return round(2 * tp / (2 * tp + fp + fn), 3) if tp + fp + fn else None


def ratio(part: float, whole: float) -> Optional[float]:
    return round(part / whole, 3) if whole else None

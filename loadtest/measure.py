"""What one load-test call measured, computed at the caller from what it sent and received,
and what a level's calls measured together (`summarize_level`).

Every latency is wall time at the caller: the moment a sample of speech left
its microphone (the audio track paces frames in real time, so clock position
-> wall time is exact) to the moment an event arrived on the data channel.

    connect_s        offer sent -> data channel open
    first_partial_s  voice start of a clip -> first partial (or final) of it
    final_latency_s  voice end of a clip -> the final that closes it
    partial_lag_s    end of the audio a partial heard -> its arrival
    agent_reply_s    voice end of an answer -> first audible interviewer audio (interview mode)

Finals are matched to clips by where they sit on the audio clock. A final
that matches no clip is something the server heard in silence: its words
count as insertions in the WER, so a load that makes Whisper hallucinate
shows up there. Words are scored as published ASR results score them
(loadtest/wer.py: jiwer over OpenAI's English normaliser).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from earshot.loadtest.caller import AgentFrame, ReceivedEvent
from earshot.loadtest.scrape import MetricsScraper, lag_percentile, timeline
from earshot.loadtest.script import PlacedClip
from earshot.loadtest.stats import percentiles
from earshot.loadtest.wer import normalize, word_errors

MEASURES = ("connect_s", "first_partial_s", "final_latency_s", "partial_lag_s", "agent_reply_s")
MATCH_SLACK_S = 0.4  # VAD bounds vs the energy bounds of a clip
AGENT_REPLY_WINDOW_S = 15.0


@dataclass
class CallRecord:
    """Raw material of one call, filled in while it runs."""

    call: int
    started_at_s: Optional[float] = None  # since the level started; None: never started
    placed: list[PlacedClip] = field(default_factory=list)
    session_id: Optional[str] = None
    connect_s: Optional[float] = None
    events: list[ReceivedEvent] = field(default_factory=list)
    agent_frames: list[AgentFrame] = field(default_factory=list)
    wall_at: Callable[[float], Optional[float]] = lambda clock_s: None  # caller clock -> time.monotonic()
    errors: list[str] = field(default_factory=list)


@dataclass
class CallMeasures:
    call: int
    session_id: Optional[str]
    connect_s: Optional[float]
    first_partial_s: list[float]
    final_latency_s: list[tuple[float, float]]  # (arrival wall time, latency)
    partial_lag_s: list[float]
    agent_reply_s: list[float]
    utterances_sent: int
    utterances_finalized: int
    word_errors: int
    reference_words: int
    finals: int
    errors: list[str]
    instance: Optional[str] = None  # the server instance that held the call (its `ready` event)

    @property
    def wer(self) -> Optional[float]:
        return self.word_errors / self.reference_words if self.reference_words else None

    def summary(self) -> dict[str, Any]:
        latencies = sorted(latency for _, latency in self.final_latency_s)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        return {
            "call": self.call,
            "session_id": self.session_id,
            "connect_s": _round(self.connect_s),
            "first_partial_s": _round(self.first_partial_s[0]) if self.first_partial_s else None,
            "finals": self.finals,
            "utterances_sent": self.utterances_sent,
            "wer": _round(self.wer),
            "final_latency_p95_s": _round(p95),
            "errors": self.errors,
            "instance": self.instance,
        }


def measure_call(record: CallRecord) -> CallMeasures:
    events = [r for r in record.events if r.event.get("type") in ("speech_start", "partial", "final", "error")]
    finals = [r for r in events if r.event["type"] == "final"]
    wall_at = record.wall_at
    clips = [p for p in record.placed if wall_at(p.speech_end_s) is not None]

    utterance_clip = _utterances_by_clip(events, clips)
    first_partial, final_latency, errors_words, reference_words, finalized = [], [], 0, 0, 0
    matched_finals: set[int] = set()
    for index, placed in enumerate(clips):
        mine = [r for r in finals if _overlaps(r.event, placed)]
        matched_finals.update(id(r) for r in mine)
        if mine:
            finalized += 1
            closing = max(mine, key=lambda r: r.event["end"])
            final_latency.append((closing.wall, closing.wall - wall_at(placed.speech_end_s)))
        ids = {u for u, c in utterance_clip.items() if c == index}
        heard = [r for r in events if r.event["type"] in ("partial", "final") and r.event.get("utterance_id") in ids]
        if heard:
            first_partial.append(min(r.wall for r in heard) - wall_at(placed.speech_start_s))
        if placed.clip.reference is not None:
            errors, words = word_errors(placed.clip.reference, " ".join(r.event["text"] for r in mine))
            errors_words += errors
            reference_words += words
    # Words finalized where no clip was spoken: hallucinations count against the WER.
    errors_words += sum(len(normalize(r.event["text"]).split()) for r in finals if id(r) not in matched_finals)

    partial_lag = [
        r.wall - wall_at(r.event["audio_end_s"])
        for r in events
        if r.event["type"] == "partial" and wall_at(r.event["audio_end_s"]) is not None
    ]
    errors = list(record.errors) + [f"server:{r.event.get('code', 'unknown')}" for r in events if r.event["type"] == "error"]
    if record.connect_s is not None and clips and not finals:
        errors.append("no_finals")
    return CallMeasures(
        call=record.call,
        session_id=record.session_id,
        connect_s=record.connect_s,
        first_partial_s=first_partial,
        final_latency_s=final_latency,
        partial_lag_s=partial_lag,
        agent_reply_s=_agent_replies(record.agent_frames, clips, wall_at),
        utterances_sent=len(clips),
        utterances_finalized=finalized,
        word_errors=errors_words,
        reference_words=reference_words,
        finals=len(finals),
        errors=errors,
        instance=next((r.event.get("instance") or None for r in record.events if r.event.get("type") == "ready"), None),
    )


# --- one level: its calls together ------------------------------------------------------------
def summarize_level(
    sessions: int,
    records: list[CallRecord],
    measures: list[CallMeasures],
    scraper: MetricsScraper,
    origin: float,
    wall_s: float,
    live_after: int,
) -> dict[str, Any]:
    failed = [m for m in measures if m.connect_s is None or _fatal(m.errors)]
    errors = Counter(code for m in measures for code in m.errors)
    reference_words = sum(m.reference_words for m in measures)
    scrapes = scraper.since(origin - 2.0)
    points = timeline(scrapes, origin)
    rss = [p["rss_mib"] for p in points]
    queue = [p["asr_queue_depth"] for p in points]
    return {
        "sessions": sessions,
        "wall_s": round(wall_s, 2),
        "calls": {
            "started": sum(1 for r in records if r.started_at_s is not None),
            "connected": sum(1 for m in measures if m.connect_s is not None),
            "completed": len(measures) - len(failed),
            "failed": len(failed),
        },
        "errors": dict(sorted(errors.items())),
        # Which server instance held each connected call: placement's spread (one key with one instance).
        "instances": dict(sorted(Counter(m.instance or "?" for m in measures if m.connect_s is not None).items())),
        "latency": {
            "connect_s": percentiles(m.connect_s for m in measures if m.connect_s is not None),
            "first_partial_s": percentiles(v for m in measures for v in m.first_partial_s),
            "final_latency_s": percentiles(v for m in measures for _, v in m.final_latency_s),
            "partial_lag_s": percentiles(v for m in measures for v in m.partial_lag_s),
            "agent_reply_s": percentiles(v for m in measures for v in m.agent_reply_s),
        },
        "utterances": {
            "sent": sum(m.utterances_sent for m in measures),
            "finalized": sum(m.utterances_finalized for m in measures),
            "missed": sum(m.utterances_sent - m.utterances_finalized for m in measures),
        },
        "wer": round(sum(m.word_errors for m in measures) / reference_words, 4) if reference_words else None,
        "server": {
            "cpu_percent": percentiles(p["cpu_percent"] for p in points),
            "rss_mib": {"start": rss[0] if rss else None, "end": rss[-1] if rss else None, "max": max(rss, default=None)},
            "asr_queue_depth": {"max": max(queue, default=None), "p95": percentiles(queue)["p95"]},
            "event_loop_lag_p95_s": lag_percentile(scrapes[0], scrapes[-1]) if len(scrapes) >= 2 else None,
            "live_sessions_max": max((p["live_sessions"] for p in points), default=0),
            "live_sessions_after": live_after,
            "scrape_failures": scraper.failures,
        },
        "meets_slo": None,
        "timeline": points,
        "final_points": sorted(
            ({"t": round(wall - origin, 3), "latency_s": round(latency, 4), "call": m.call} for m in measures for wall, latency in m.final_latency_s),
            key=lambda p: p["t"],
        ),
        "per_call": [m.summary() for m in measures],
    }


FATAL_ERRORS = ("connect_failed", "no_finals", "cut_off", "call_failed", "http_")


def _fatal(errors: list[str]) -> bool:
    """Errors that mean the call failed; server `error` events are counted, not fatal by themselves."""
    return any(code.startswith(FATAL_ERRORS) for code in errors)


def _overlaps(final: dict[str, Any], placed: PlacedClip) -> bool:
    return final["start"] < placed.speech_end_s + MATCH_SLACK_S and final["end"] > placed.speech_start_s - MATCH_SLACK_S


def _utterances_by_clip(events: list[ReceivedEvent], clips: list[PlacedClip]) -> dict[int, int]:
    """utterance_id -> index of the clip it started in."""
    found = {}
    for r in events:
        if r.event["type"] != "speech_start":
            continue
        start = r.event["start_s"]
        for index, placed in enumerate(clips):
            if placed.speech_start_s - MATCH_SLACK_S - 0.3 <= start <= placed.speech_end_s:  # pre-roll opens early
                found[r.event["utterance_id"]] = index
                break
    return found


def _agent_replies(frames: list[AgentFrame], clips: list[PlacedClip], wall_at) -> list[float]:
    """Per answer: its voice end -> the first audible interviewer frame before the next answer."""
    replies = []
    for index, placed in enumerate(clips):
        end_wall = wall_at(placed.speech_end_s)
        next_start = wall_at(clips[index + 1].speech_start_s) if index + 1 < len(clips) else None
        limit = min(end_wall + AGENT_REPLY_WINDOW_S, next_start or float("inf"))
        first = next((f.wall for f in frames if f.audible and end_wall < f.wall < limit), None)
        if first is not None:
            replies.append(first - end_wall)
    return replies


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)

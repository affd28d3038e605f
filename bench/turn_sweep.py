"""The end-of-turn trade-off, offline: how fast a finished answer is taken, against how often a pause is.

Two steps, so one slow pass feeds a fast sweep:

1. `collect` - every turn-set answer goes through the real `VadSegmenter` (the
   model mode's VAD settings) in 20 ms chunks, as the pipeline feeds it. At
   every pause, when the VAD's trailing silence reaches each point of `GRID_MS`,
   the end-of-turn model hears `open_audio()` - what the Endpointer hands it -
   and its probability and inference time are kept with the audio clock of that
   moment. Each VAD pause is labelled by the answer's own timing (the energy
   ends of voice the turn set records): `mid` (a designed pause inside the
   answer: the interviewer must not speak), `end` (the answer is over) or `gap`
   (a natural gap between words of a recording, long enough to be asked about).
   Where the pause reaches the VAD's pause hint (180 ms), the utterance so far
   is transcribed as the pipeline's speculative decode would be, and whether
   its words stop mid-phrase (models/turn_text.py) is kept: the words check.
2. `evaluate` - for one (threshold, checks schedule, fallback) the Endpointer's
   rules are replayed on that cache: a check the schedule has not reached is
   not asked, one that falls due while the last call still runs is skipped, a
   "complete" that arrives after the voice came back ends nothing, a
   "complete" whose words stop mid-phrase is held (with `check_words`, from
   the pause hint on, as the Endpointer has the words only then), and a pause
   the model never closes ends at the fallback silence. What comes out: the
   cuts (a turn ended inside the answer), the takeovers (the cuts whose pause
   outlasts the time to the interviewer's first audible frame, REPLY_AUDIBLE_S:
   the candidate is talked over), and for every answer's end who ended it and
   how long after the end of voice.

The end of voice is the audio's own (energy, `speech_bounds` threshold), not the
VAD's last voiced frame, which lies about 0.07 s later (p50 on the set, with
the VAD's noise gate; webrtcvad alone hears the decaying tail as voice and put
it 0.1-0.2 s later); both are reported. A decision's time is the audio
clock of the chunk that made the check due plus the model's measured inference
time: what a live caller waits, less the network and the final's decode.

The cache replays each answer as if every check had said "incomplete": after a
real takeover the next utterance would start afresh and the model would hear a
shorter context. Takeovers are counted per pause, so this changes only what
later checks in an answer already taken over would hear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from bench.common import progress
from earshot.loadtest.stats import percentiles
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, read_audio
from earshot.models.turn_model import EndOfTurnModel
from earshot.models.turn_text import sounds_unfinished
from earshot.models.vad import VadConfig, VadSegmenter, VadSpeechEnd

# Silences (ms) at which the model is asked in every pause. The VAD counts silence in 30 ms frames,
# so a check at 200 ms is asked at 210 ms and one at 400 ms at 420 ms, as in the pipeline.
GRID_MS = (90, 120, 150, 180, 200, 240, 300, 400, 600, 900, 1200, 1500)
CHUNK_MS = 20  # what the pipeline gets per WebRTC frame
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SCHEDULES: tuple[tuple[int, ...], ...] = (
    (90,), (120,), (150,), (180,), (200,), (240,), (300,), (400,),
    (200, 600, 1200), (150, 400, 900), (300, 900),
)
FALLBACKS_MS = (1500, 2000, 2500)
MID_SLACK_S = 0.3  # a VAD pause belongs to a designed pause when its voice ended this close before it, or inside it
# Decision -> the interviewer's first audible frame at the caller. A turn ended inside an answer is a takeover only
# if the pause outlasts this (sooner, the Listener keeps listening). Measured live, 2026-12-06: reply heard p50
# 0.828 s vs decision p50 0.318 s (model, 200 ms reply gap); 1.427 vs 1.280 s (timers: reply made ready in the pause).
REPLY_AUDIBLE_S = {"model": 0.5, "silence": 0.15}
# What a chosen point may cost: at most this share of the designed pauses (and of answers) taken over.
MAX_MID_TAKEOVER_RATE = 0.05
MAX_ANSWERS_TAKEN_OVER_RATE = 0.10


@dataclass(frozen=True)
class Check:
    """One question to the model during a pause."""

    silence_ms: int  # the grid point (a setting's value)
    at_s: float  # audio clock when it was asked: the end of the chunk that made it due
    probability: float
    inference_s: float
    voiced_ms: int  # voice in the utterance so far (the Endpointer asks only from min_speech_ms on)


@dataclass(frozen=True)
class Pause:
    """One VAD pause of an answer, with the model's answers at each grid point it reached."""

    item_id: str
    label: str  # mid | end | gap
    mid_index: int  # which of the item's MidPauses (-1 unless mid)
    mid_kind: str  # that pause's kind (mid_clause | hesitation | list), else ""
    voice_end_s: float  # the audio's own end of voice before it (energy); for a gap, the VAD's
    vad_end_s: float  # the VAD's last voiced frame before it
    resumed_s: Optional[float]  # audio clock when the VAD heard voice again (None: it never did)
    checks: tuple[Check, ...]
    words_unfinished: Optional[bool] = None  # its words so far stop mid-phrase (None: not transcribed, no pause hint)
    words: str = ""  # what the speculative decode heard, for reading

    def check(self, silence_ms: int) -> Optional[Check]:
        return next((c for c in self.checks if c.silence_ms == silence_ms), None)


@dataclass(frozen=True)
class AnswerCache:
    item_id: str
    kind: str
    voice_s: float  # voice start to voice end
    mid_pauses: int
    pauses: tuple[Pause, ...]


# --- 1. the model's answers, once ------------------------------------------------------------------------
def label_pause(item, vad_end_s: float) -> tuple[str, int, str, float]:
    """(label, mid index, mid kind, energy voice end) of a VAD pause whose voice ended at `vad_end_s`."""
    if vad_end_s >= item.voice_end_s - MID_SLACK_S:
        return "end", -1, "", item.voice_end_s
    for index, mid in enumerate(item.pauses):
        if mid.start_s - MID_SLACK_S <= vad_end_s <= mid.end_s:
            return "mid", index, mid.kind, mid.start_s
    return "gap", -1, "", vad_end_s


Transcriber = Callable[[bytes], Optional[str]]  # an utterance's audio so far -> its text (None: no words)


def collect_item(
    item, model: EndOfTurnModel, vad_config: VadConfig, grid: Sequence[int] = GRID_MS, words: Optional[Transcriber] = None
) -> AnswerCache:
    pcm = read_audio(item.path)
    vad = VadSegmenter(vad_config)
    chunk = SAMPLE_RATE * CHUNK_MS // 1000 * BYTES_PER_SAMPLE
    pauses: list[Pause] = []
    open_end: Optional[float] = None  # the VAD pause being asked about: its last voiced frame
    checks: list[Check] = []
    heard: Optional[str] = None  # the pause's words, once it reached the pause hint

    def close(resumed_s: Optional[float]) -> None:
        nonlocal open_end, checks, heard
        if open_end is not None and checks:
            label, mid_index, mid_kind, voice_end = label_pause(item, open_end)
            unfinished = None if heard is None else sounds_unfinished(heard)
            pauses.append(
                Pause(item.id, label, mid_index, mid_kind, voice_end, open_end, resumed_s, tuple(checks), unfinished, heard or "")
            )
        open_end, checks, heard = None, [], None

    for offset in range(0, len(pcm), chunk):
        events = vad.push(pcm[offset : offset + chunk])
        now_s = (offset + len(pcm[offset : offset + chunk])) / BYTES_PER_SAMPLE / SAMPLE_RATE
        if any(isinstance(e, VadSpeechEnd) for e in events):
            close(None)  # the VAD's own end (the longest fallback): no more checks in this pause
        if not vad.in_speech or vad.trailing_silence_ms == 0:
            if open_end is not None and vad.in_speech:
                close(vad.last_voiced_end_s)  # voice is back
            continue
        if vad.last_voiced_end_s != open_end:
            close(vad.last_voiced_end_s)
            open_end = vad.last_voiced_end_s
        if words is not None and heard is None and vad.trailing_silence_ms >= vad_config.pause_hint_ms:
            heard = words(vad.utterance_audio()) or ""  # the speculative final decode's audio
        asked = {c.silence_ms for c in checks}
        due = [s for s in grid if s <= vad.trailing_silence_ms and s not in asked]
        if due:
            verdict = model.predict(vad.open_audio())
            for s in due:  # points passed at once share one answer, as the Endpointer's due checks do
                probability, inference_s = round(verdict.probability, 4), round(verdict.inference_s, 4)
                checks.append(Check(s, round(now_s, 3), probability, inference_s, vad.voiced_ms))
    close(None)
    return AnswerCache(item.id, item.kind, round(item.voice_end_s - item.voice_start_s, 3), len(item.pauses), tuple(pauses))


def collect(
    items: Iterable, model: EndOfTurnModel, vad_config: VadConfig, words: Optional[Transcriber] = None
) -> list[AnswerCache]:
    caches = []
    items = list(items)
    for index, item in enumerate(items):
        cache = collect_item(item, model, vad_config, words=words)
        calls = len({(p.vad_end_s, c.at_s) for p in cache.pauses for c in p.checks})
        progress(f"sweep {index + 1:2d}/{len(items)} {item.id:28s} {len(cache.pauses)} pauses, {calls} model calls")
        caches.append(cache)
    return caches


def vad_voice_end(item, vad_config: VadConfig) -> float:
    """Where the VAD hears the answer's voice end (its last utterance's end), for items whose quiet it hears as voice."""
    pcm = read_audio(item.path)
    vad = VadSegmenter(vad_config)
    chunk = SAMPLE_RATE * CHUNK_MS // 1000 * BYTES_PER_SAMPLE
    events = [e for offset in range(0, len(pcm), chunk) for e in vad.push(pcm[offset : offset + chunk])] + vad.flush()
    ends = [e for e in events if isinstance(e, VadSpeechEnd)]
    return max((e.end_s for e in ends), default=0.0)


# --- 2. the Endpointer's rules, replayed ---------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    threshold: float
    checks_ms: tuple[int, ...]
    fallback_ms: int = 2500
    min_speech_ms: int = 500  # as EndpointingConfig: VAD-counted voice before the model is asked
    frame_ms: int = 30
    check_words: bool = True  # hold a "complete" whose words stop mid-phrase
    pause_hint_ms: int = 180  # from this silence on the words are known (the speculative decode starts there)

    @property
    def name(self) -> str:
        words = " words" if self.check_words else ""
        return f"t={self.threshold:.1f} checks={','.join(map(str, self.checks_ms))} fallback={self.fallback_ms}{words}"


class Inside:
    """Turns ended inside answers (cuts), or those of them the candidate would have heard (takeovers), counted."""

    def __init__(self) -> None:
        self.mid: dict[tuple[str, int], str] = {}  # (answer, designed pause) -> its kind
        self.gaps = 0
        self.answers: set[str] = set()

    def add(self, item_id: str, pause: Pause) -> None:
        self.answers.add(item_id)
        if pause.label == "mid":
            self.mid[(item_id, pause.mid_index)] = pause.mid_kind
        else:
            self.gaps += 1

    def row(self, name: str, mids: int, answers: int) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for kind in self.mid.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        answer_word = "answers_taken_over" if name == "takeovers" else "answers_cut"
        return {f"mid_{name}": len(self.mid), f"mid_{name[:-1]}_rate": round(len(self.mid) / mids, 4) if mids else None,
                f"mid_{name}_by_kind": dict(sorted(kinds.items())), f"gap_{name}": self.gaps, answer_word: len(self.answers),
                f"{answer_word}_rate": round(len(self.answers) / answers, 4) if answers else None}


@dataclass(frozen=True)
class Decision:
    by: str  # model | fallback
    at_s: float  # audio clock of the decision


def decide(pause: Pause, point: Point) -> Optional[Decision]:
    """What the Endpointer would do in this pause: end it (by the model or the fallback), or nothing."""
    busy_until = -math.inf
    for silence_ms in point.checks_ms:
        check = pause.check(silence_ms)
        if check is None:
            break  # the pause ended before this silence
        if check.voiced_ms < point.min_speech_ms or check.at_s < busy_until:
            continue  # not asked about (too little voice), or skipped (the last call still ran)
        busy_until = check.at_s + check.inference_s
        still_paused = pause.resumed_s is None or busy_until < pause.resumed_s
        held = point.check_words and silence_ms >= point.pause_hint_ms and bool(pause.words_unfinished)
        if check.probability > point.threshold and still_paused and not held:
            return Decision("model", busy_until)
    frames = math.ceil(point.fallback_ms / point.frame_ms)
    fallback_at = pause.vad_end_s + frames * point.frame_ms / 1000
    if pause.resumed_s is None or pause.resumed_s > fallback_at:
        return Decision("fallback", fallback_at)
    return None


def evaluate(caches: Sequence[AnswerCache], point: Point) -> dict[str, Any]:
    mids = sum(c.mid_pauses for c in caches)
    cuts, takeovers = Inside(), Inside()
    ends_by = {"model": 0, "fallback": 0, "none": 0}
    latency, latency_vad = [], []
    for cache in caches:
        end_decision: Optional[Decision] = None
        end_vad: Optional[float] = None
        voice_end: Optional[float] = None
        for pause in cache.pauses:
            decision = decide(pause, point)
            if pause.label == "end":
                if end_decision is None and decision is not None:
                    end_decision, end_vad, voice_end = decision, pause.vad_end_s, pause.voice_end_s
                continue
            if decision is None:
                continue
            cuts.add(cache.item_id, pause)
            if pause.resumed_s is None or decision.at_s + REPLY_AUDIBLE_S["model"] < pause.resumed_s:
                takeovers.add(cache.item_id, pause)
        if end_decision is None:
            ends_by["none"] += 1
            continue
        ends_by[end_decision.by] += 1
        latency.append(end_decision.at_s - voice_end)
        latency_vad.append(end_decision.at_s - end_vad)
    p = percentiles(latency)
    return {
        "threshold": point.threshold,
        "checks_ms": ",".join(map(str, point.checks_ms)),
        "fallback_ms": point.fallback_ms,
        "check_words": point.check_words,
        "answers": len(caches),
        "mid_pauses": mids,
        **takeovers.row("takeovers", mids, len(caches)),
        **cuts.row("cuts", mids, len(caches)),
        "ends_by_model": ends_by["model"],
        "ends_by_fallback": ends_by["fallback"],
        "ends_undecided": ends_by["none"],
        "end_latency_p50_s": p["p50"],
        "end_latency_p95_s": p["p95"],
        "end_latency_mean_s": p["mean"],
        "end_latency_from_vad_p50_s": percentiles(latency_vad)["p50"],
    }


def sweep(caches: Sequence[AnswerCache], check_words: bool = True) -> list[dict[str, Any]]:
    return [evaluate(caches, Point(t, s, check_words=check_words)) for s in SCHEDULES for t in THRESHOLDS]


def silence_baseline(
    caches: Sequence[AnswerCache], end_of_speech_ms: int, turn_pause_ms: int, frame_ms: int = 30
) -> dict[str, Any]:
    """The timers on the same pauses: a pause whose VAD silence outlasts end_of_speech + turn_pause is taken over.

    (The interviewer's wait starts when the utterance ends, so a pause of
    exactly that length is lost; the voice coming back a few frames earlier
    still loses it live, where the VAD needs 90 ms of voice to say so.)
    """
    wait_s = math.ceil(end_of_speech_ms / frame_ms) * frame_ms / 1000 + turn_pause_ms / 1000
    mids = sum(c.mid_pauses for c in caches)
    cuts, takeovers = Inside(), Inside()
    latency, latency_vad = [], []
    for cache in caches:
        end = next((p for p in cache.pauses if p.label == "end"), None)
        if end is not None:
            latency.append(end.vad_end_s + wait_s - end.voice_end_s)
            latency_vad.append(wait_s)
        for pause in cache.pauses:
            if pause.label == "end":
                continue
            silence_s = math.inf if pause.resumed_s is None else pause.resumed_s - pause.vad_end_s
            if silence_s >= wait_s:
                cuts.add(cache.item_id, pause)
            if silence_s >= wait_s + REPLY_AUDIBLE_S["silence"]:
                takeovers.add(cache.item_id, pause)
    p = percentiles(latency)
    return {
        "endpointing": "silence", "end_of_speech_ms": end_of_speech_ms, "turn_pause_ms": turn_pause_ms,
        "answers": len(caches), "mid_pauses": mids,
        **takeovers.row("takeovers", mids, len(caches)),
        **cuts.row("cuts", mids, len(caches)),
        "end_latency_p50_s": p["p50"], "end_latency_p95_s": p["p95"], "end_latency_mean_s": p["mean"],
        "end_latency_from_vad_p50_s": percentiles(latency_vad)["p50"],
    }


def choose(rows: Sequence[dict[str, Any]], baseline: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The fastest point within the takeover limits; failing that, the safest point still faster than the timers."""
    def fast(row: dict[str, Any]) -> tuple[float, float]:
        return (row["end_latency_p50_s"] or math.inf, row["end_latency_p95_s"] or math.inf)

    allowed = [
        r for r in rows
        if (r["mid_takeover_rate"] or 0) <= MAX_MID_TAKEOVER_RATE
        and (r["answers_taken_over_rate"] or 0) <= MAX_ANSWERS_TAKEN_OVER_RATE
    ]
    if allowed:
        best = min(allowed, key=fast)
        return best, (f"the lowest p50 end of voice -> decision among the {len(allowed)} of {len(rows)} points that take over "
                      f"at most {MAX_MID_TAKEOVER_RATE:.0%} of the designed pauses and at most "
                      f"{MAX_ANSWERS_TAKEN_OVER_RATE:.0%} of answers")
    faster = [r for r in rows if (r["end_latency_p95_s"] or math.inf) < (baseline["end_latency_p50_s"] or math.inf)] or list(rows)
    best = min(faster, key=lambda r: (r["answers_taken_over"], r["mid_takeovers"], *fast(r)))
    return best, (f"no point keeps takeovers within {MAX_MID_TAKEOVER_RATE:.0%} of the designed pauses and "
                  f"{MAX_ANSWERS_TAKEN_OVER_RATE:.0%} of answers; of the {len(faster)} points whose p95 is still below the "
                  f"silence timers' p50 ({baseline['end_latency_p50_s']} s), the one that takes over the fewest answers, "
                  f"then the fewest designed pauses, then the fastest")


def fallback_rows(caches: Sequence[AnswerCache], threshold: float, checks_ms: tuple[int, ...]) -> list[dict[str, Any]]:
    return [evaluate(caches, Point(threshold, checks_ms, fallback)) for fallback in FALLBACKS_MS]


def inference_times(caches: Sequence[AnswerCache]) -> dict[str, Any]:
    seen = {(c.item_id, p.vad_end_s, k.at_s): k.inference_s for c in caches for p in c.pauses for k in p.checks}
    return percentiles(seen.values())


def end_probabilities(caches: Sequence[AnswerCache], silence_ms: int = 200) -> list[dict[str, Any]]:
    """Per answer: the model's probability at its end and at each designed pause, at one silence (for the table)."""
    rows = []
    for cache in caches:
        at = {}
        for pause in cache.pauses:
            check = pause.check(silence_ms)
            if check is None or pause.label == "gap":
                continue
            key = "end" if pause.label == "end" else f"mid{pause.mid_index}"
            at.setdefault(key, check.probability)
        rows.append({"id": cache.item_id, "kind": cache.kind, **at})
    return rows

"""The report's scores: content, pace, fluency and grammar, each 0-100 with how it was computed, and overall.

Scores are computed from inputs already rounded the way the report shows
them, so someone checking with a calculator gets the same answer.
"""

from __future__ import annotations

from typing import Any, Optional

# Overall score weights; content counts most because it is what the interview asks about.
WEIGHTS = (("content", 0.4), ("pace", 0.2), ("fluency", 0.2), ("grammar", 0.2))
FILLER_PENALTY = 5.0  # fluency points per filler per speaking minute
PAUSE_PENALTY = 10.0  # fluency points per long pause per speaking minute
GRAMMAR_PENALTY = 20.0  # grammar points per issue per 100 words: 5 per 100 words scores 0


def _clamp(value: float) -> float:
    return round(min(max(value, 0.0), 100.0), 1)


def compute_scores(
    question_reports: list[dict[str, Any]],
    pace: dict[str, Any],
    fillers: int,
    long_pauses: int,
    issues: int,
    words: int,
) -> dict[str, Any]:
    scored = [q for q in question_reports if not q["skipped"]]
    skipped = [q["index"] for q in question_reports if q["skipped"]]
    # Coverage of a question with no key points cannot be judged; it is left out.
    coverages = [q["coverage"] for q in scored if q["coverage"] is not None]
    skipped_note = f" Skipped questions ({', '.join(map(str, skipped))}) are not scored." if skipped else ""
    if coverages:
        content_score: Optional[float] = round(sum(coverages) / len(coverages), 1)
        listed = ", ".join(f"Q{q['index']} {q['coverage']}" for q in scored if q["coverage"] is not None)
        content_how = (
            f"Mean key-point coverage of the {len(coverages)} questions not skipped ({listed}); "
            "a question's coverage is the share of its key points covered. "
            "An unanswered question counts as 0." + skipped_note
        )
    else:
        content_score = None
        content_how = "No question was answered, so content is not scored." + skipped_note
    content = {"score": content_score, "how": content_how, "questions_scored": len(coverages)}

    speaking_s, in_band_s = pace["speaking_s"], pace["in_band_s"]
    minutes = round(speaking_s / 60.0, 2)
    if speaking_s > 0:
        pace_score: Optional[float] = _clamp(100.0 * in_band_s / speaking_s)
        pace_how = (
            f"Share of speaking time at a pace between {pace['min_wps']} and {pace['max_wps']} words per second: "
            f"{in_band_s} s of {speaking_s} s. Each final's pace is its words divided by its voiced time "
            "(its length less long pauses between its words, as the live meter counts it)."
        )
    else:
        pace_score, pace_how = None, "No speech, so pace is not scored."
    pace_scores = {"score": pace_score, "how": pace_how, "in_band_s": in_band_s, "speaking_s": speaking_s}

    if minutes > 0:
        fillers_per_minute = round(fillers / minutes, 2)
        pauses_per_minute = round(long_pauses / minutes, 2)
        fluency_score: Optional[float] = _clamp(
            100.0 - FILLER_PENALTY * fillers_per_minute - PAUSE_PENALTY * pauses_per_minute
        )
        fluency_how = (
            f"100 minus {FILLER_PENALTY:g} per filler word per minute ({fillers} in {minutes} speaking minutes = "
            f"{fillers_per_minute}/min) minus {PAUSE_PENALTY:g} per long pause per minute "
            f"({long_pauses} = {pauses_per_minute}/min), kept within 0-100."
        )
    else:
        fillers_per_minute = pauses_per_minute = 0.0
        fluency_score, fluency_how = None, "No speech, so fluency is not scored."
    fluency = {
        "score": fluency_score,
        "how": fluency_how,
        "fillers": fillers,
        "long_pauses": long_pauses,
        "speaking_minutes": minutes,
        "fillers_per_minute": fillers_per_minute,
        "long_pauses_per_minute": pauses_per_minute,
    }

    if words > 0:
        per_100 = round(100.0 * issues / words, 2)
        grammar_score: Optional[float] = _clamp(100.0 - GRAMMAR_PENALTY * per_100)
        grammar_how = (
            f"100 minus {GRAMMAR_PENALTY:g} per grammar issue per 100 words "
            f"({issues} issues in {words} words = {per_100} per 100 words), kept within 0-100."
        )
    else:
        per_100 = 0.0
        grammar_score, grammar_how = None, "No words, so grammar is not scored."
    grammar = {"score": grammar_score, "how": grammar_how, "issues": issues, "words": words, "per_100_words": per_100}

    parts = {"content": content, "pace": pace_scores, "fluency": fluency, "grammar": grammar}
    used = [(name, weight) for name, weight in WEIGHTS if parts[name]["score"] is not None]
    total_weight = sum(weight for _, weight in used)
    if used:
        overall_score: Optional[float] = round(
            sum(parts[name]["score"] * weight for name, weight in used) / total_weight, 1
        )
        terms = " + ".join(f"{weight:g} x {name} {parts[name]['score']}" for name, weight in used)
        overall_how = f"Weighted mean: ({terms}) / {total_weight:g}."
        if len(used) < len(WEIGHTS):
            left_out = ", ".join(name for name, _ in WEIGHTS if parts[name]["score"] is None)
            overall_how += f" Not scored, so left out: {left_out}."
    else:
        overall_score, overall_how = None, "Nothing to score: no question was answered."
    overall = {"score": overall_score, "how": overall_how, "weights": dict(WEIGHTS)}
    return {"overall": overall, **parts}

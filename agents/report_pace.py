"""The report's pace and pause sections: words per second over the interview, and long silences.

Counted the way the live pace meter (agents/pace.py) counts them, so the
report agrees with what the candidate saw during the interview.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from earshot.agents.pace import long_gaps_inside
from earshot.agents.report_record import AnswerFinal, AskedQuestion, InterviewRecord, word_count
from earshot.models.asr import Word

ROLLING_WINDOW_S = 30.0  # the live pace meter's window (agents/pace.py PaceConfig.window_s)


def pace_section(questions: Sequence[AskedQuestion], record: InterviewRecord, t0: float) -> dict[str, Any]:
    """One point per final, and the rolling rate the live meter showed, both against interview time."""
    finals = sorted(
        ((q.index, f) for q in questions for f in q.answer if f.end > f.start),
        key=lambda item: item[1].start,
    )
    points = []
    for index, f in finals:
        start, end = round(f.start - t0, 2), round(f.end - t0, 2)
        # As the live meter counts it (agents/pace.py): a long gap between words
        # is a pause, reported as one, not slowness.
        gaps_s, _ = long_gaps_inside(_asr_words(f), record.long_pause_s)
        gaps_s = round(gaps_s, 2)
        voiced = round(max(end - start - gaps_s, 0.0), 2)
        n = word_count(f)
        wps = round(n / voiced, 2) if voiced > 0 else 0.0
        points.append(
            {
                "question": index,
                "t_s": round((start + end) / 2, 2),
                "start_s": start,
                "end_s": end,
                "pauses_s": gaps_s,
                "voiced_s": voiced,
                "words": n,
                "wps": wps,
                "in_band": record.pace_min_wps <= wps <= record.pace_max_wps,
            }
        )
    rolling = []
    for i, point in enumerate(points):
        # Like the live meter: finals that ended within the window before this one ended.
        window = [p for p in points[: i + 1] if p["end_s"] >= point["end_s"] - ROLLING_WINDOW_S]
        spoken = sum(p["voiced_s"] for p in window)
        rolling.append(
            {"t_s": point["end_s"], "wps": round(sum(p["words"] for p in window) / spoken, 2) if spoken else 0.0}
        )
    speaking = round(sum(p["voiced_s"] for p in points), 2)
    in_band = round(sum(p["voiced_s"] for p in points if p["in_band"]), 2)
    return {
        "min_wps": record.pace_min_wps,
        "max_wps": record.pace_max_wps,
        "window_s": ROLLING_WINDOW_S,
        "speaking_s": speaking,
        "in_band_s": in_band,
        "words": sum(p["words"] for p in points),
        "mean_wps": round(sum(p["words"] for p in points) / speaking, 2) if speaking else 0.0,
        "points": points,
        "rolling": rolling,
    }


def long_pauses(questions: Sequence[AskedQuestion], long_pause_s: float, t0: float) -> list[dict[str, Any]]:
    """Silences of at least `long_pause_s` inside an answer: between words, and between finals."""
    pauses: list[dict[str, Any]] = []

    def add(question: int, start: float, end: float, kind: str, after: str, before: str) -> None:
        if end - start >= long_pause_s:
            pauses.append(
                {
                    "question": question,
                    "at_s": round(start - t0, 2),
                    "duration_s": round(end - start, 2),
                    "kind": kind,
                    "after": after,
                    "before": before,
                }
            )

    for q in questions:
        previous: Optional[AnswerFinal] = None
        for f in q.answer:
            if previous is not None and previous.part == f.part:
                add(q.index, previous.end, f.start, "between_finals", _last_word(previous), _first_word(f))
            for (w1, _, e1), (w2, s2, _) in zip(f.words, f.words[1:]):
                add(q.index, e1, s2, "within_final", w1.strip(), w2.strip())
            previous = f
    return pauses


def _first_word(final: AnswerFinal) -> str:
    return final.words[0][0].strip() if final.words else (final.text.split() or [""])[0]


def _last_word(final: AnswerFinal) -> str:
    return final.words[-1][0].strip() if final.words else (final.text.split() or [""])[-1]



def _asr_words(final: AnswerFinal) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 1.0) for text, start, end in final.words)


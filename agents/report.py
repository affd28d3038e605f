"""The post-interview report: what was said, what it covered, and how it was said.

`build_report` is a pure function of an `InterviewRecord` plus a sentence
encoder; it returns a JSON-ready dict that the report page draws. It is
blocking CPU work (the encoder), so the server calls it in a worker thread.

Every number shown can be recomputed from other numbers shown: a score's
`how` names its inputs, and those inputs are in the report, already rounded
the way they are shown. Scores are computed from the rounded inputs, so
someone checking with a calculator gets the same answer.

Times are seconds on the session's audio clock less `audio_start_s`, so the
interview starts at 0.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from earshot.agents.grammar import Correction, changed_range, check_grammar
from earshot.agents.pace import SINGLE_FILLERS, count_fillers, long_gaps_inside
from earshot.models.asr import Word

REPORT_VERSION = 1
ROLLING_WINDOW_S = 30.0  # the live pace meter's window (agents/pace.py PaceConfig.window_s)
# Overall score weights; content counts most because it is what the interview asks about.
WEIGHTS = (("content", 0.4), ("pace", 0.2), ("fluency", 0.2), ("grammar", 0.2))
FILLER_PENALTY = 5.0  # fluency points per filler per speaking minute
PAUSE_PENALTY = 10.0  # fluency points per long pause per speaking minute
GRAMMAR_PENALTY = 20.0  # grammar points per issue per 100 words: 5 per 100 words scores 0


class Encoder(Protocol):
    """What the report needs from models.encoder.SentenceEncoder."""

    def encode(self, sentences: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class AnswerFinal:
    text: str
    start: float  # session audio clock, seconds
    end: float
    words: tuple[tuple[str, float, float], ...]  # (word, start, end)
    # Which stretch of the answer this final belongs to: it goes up each time
    # the interviewer speaks in between (a follow-up, a hint, a repeat), e.g.
    # the number of follow-ups and hints given before it. A gap between finals
    # of different parts holds the interviewer's voice, so it is not the
    # candidate's pause; between finals of the same part it is.
    part: int = 0


@dataclass(frozen=True)
class AskedQuestion:
    index: int  # 1-based
    question_id: str
    text: str
    key_points: tuple[str, ...]
    follow_ups: tuple[str, ...]  # the follow-up questions actually asked
    answer: tuple[AnswerFinal, ...]  # every final of the answers to it and its follow-ups, in order
    skipped: bool
    hints: int


@dataclass(frozen=True)
class InterviewRecord:
    session_id: str
    role: str
    role_title: str
    difficulty: str
    started_at: float  # unix time
    ended_at: float
    questions: tuple[AskedQuestion, ...]
    pace_min_wps: float
    pace_max_wps: float
    long_pause_s: float
    audio_start_s: float = 0.0  # the audio clock when the interview began


# ---------------------------------------------------------------- sentences

# Whisper writes "e.g." and "Mr." mid-sentence; a full stop after these ends no sentence.
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|vs|mr|mrs|dr|approx)\.$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_FILLER_WORDS = re.compile(
    r"(?<![\w'])(?:" + "|".join(sorted(SINGLE_FILLERS, key=len, reverse=True)) + r")(?![\w'])[,.]?\s*",
    re.IGNORECASE,
)


def split_sentences(text: str) -> list[str]:
    """Sentences of a transcript, split at ". ", "? " and "! " except after abbreviations."""
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        candidate = text[start : m.end()].strip()
        if _ABBREVIATIONS.search(text[start : m.start() + 1]):
            continue
        if candidate:
            sentences.append(candidate)
        start = m.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def answer_sentences(record: InterviewRecord) -> list[str]:
    """Every answer sentence, split as the report splits them: the input for `llm_grammar_review`.

    LLM corrections name the sentence they fix; when it is one of these, the
    report can place it under its question and merge it with the rules' fixes.
    """
    return [
        sentence
        for q in sorted(record.questions, key=lambda q: q.index)
        for sentence in split_sentences(_transcript(q))
    ]


def _transcript(question: AskedQuestion) -> str:
    return " ".join(f.text.strip() for f in question.answer if f.text.strip())


def _without_fillers(sentence: str) -> str:
    """The sentence for matching: "um" and "uh" carry no meaning and only dilute the embedding."""
    return re.sub(r"\s+", " ", _FILLER_WORDS.sub("", sentence)).strip()


def matching_units(sentences: Sequence[str]) -> list[str]:
    """What key points are matched against: each sentence, and each pair of neighbours.

    A key point is often made across two short spoken sentences ("Threads
    share memory. So you need locks."); the pair catches it where neither
    sentence alone does. On ten hand-labelled spoken answers at threshold 0.5,
    adding pairs took recall from 0.74 to 0.81 for precision 0.83 -> 0.81;
    triples and comma-clauses added nothing more.
    """
    units = list(sentences)
    units += [f"{a} {b}" for a, b in zip(sentences, sentences[1:])]
    return units


# ---------------------------------------------------------------- the report


def build_report(
    record: InterviewRecord,
    encoder: Encoder,
    *,
    threshold: float = 0.5,
    grammar: Optional[Sequence[Correction]] = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict; `grammar` adds LLM corrections to the rule-based ones."""
    t0 = record.audio_start_s
    questions = sorted(record.questions, key=lambda q: q.index)

    transcripts = {q.index: _transcript(q) for q in questions}
    sentences = {q.index: split_sentences(transcripts[q.index]) for q in questions}
    coverage = _key_point_coverage(questions, sentences, encoder, threshold)

    pace = _pace(questions, record, t0)
    pauses = _long_pauses(questions, record.long_pause_s, t0)
    fillers = {q.index: count_fillers(transcripts[q.index]) for q in questions}
    corrections = _grammar(questions, sentences, transcripts, grammar or ())
    words = {q.index: sum(_word_count(f) for f in q.answer) for q in questions}

    question_reports = []
    for q in questions:
        key_points = coverage.get(q.index, [])
        covered = sum(1 for k in key_points if k["covered"])
        scored = not q.skipped
        question_reports.append(
            {
                "index": q.index,
                "question_id": q.question_id,
                "text": q.text,
                "follow_ups": list(q.follow_ups),
                "skipped": q.skipped,
                "hints": q.hints,
                "answered": bool(transcripts[q.index]),
                "transcript": transcripts[q.index],
                "words": words[q.index],
                "speaking_s": round(sum(p["voiced_s"] for p in pace["points"] if p["question"] == q.index), 2),
                "key_points": key_points,
                "key_points_covered": covered,
                # Skipped questions are not scored; an unanswered one scores 0.
                "coverage": round(100.0 * covered / len(key_points), 1) if scored and key_points else None,
                "fillers": dict(fillers[q.index]),
                "long_pauses": sum(1 for p in pauses if p["question"] == q.index),
                "grammar_issues": sum(1 for c in corrections if c["question"] == q.index),
            }
        )

    filler_counts: Counter = Counter()
    for counts in fillers.values():
        filler_counts += counts
    total_words = sum(words.values())
    scores = _scores(question_reports, pace, sum(filler_counts.values()), len(pauses), len(corrections), total_words)

    return {
        "version": REPORT_VERSION,
        "session_id": record.session_id,
        "role": record.role,
        "role_title": record.role_title,
        "difficulty": record.difficulty,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": round(max(record.ended_at - record.started_at, 0.0), 1),
        "settings": {
            "key_point_threshold": threshold,
            "pace_min_wps": record.pace_min_wps,
            "pace_max_wps": record.pace_max_wps,
            "long_pause_s": record.long_pause_s,
            "rolling_window_s": ROLLING_WINDOW_S,
        },
        "scores": scores,
        "questions": question_reports,
        "pace": pace,
        "fillers": {
            "total": sum(filler_counts.values()),
            "per_minute": scores["fluency"]["fillers_per_minute"],
            "counts": dict(filler_counts.most_common()),
        },
        "long_pauses": {"threshold_s": record.long_pause_s, "count": len(pauses), "items": pauses},
        "grammar": {
            "issues": len(corrections),
            "words": total_words,
            "per_100_words": scores["grammar"]["per_100_words"],
            "corrections": corrections,
        },
    }


def _asr_words(final: AnswerFinal) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 1.0) for text, start, end in final.words)


def _word_count(final: AnswerFinal) -> int:
    return len(final.words) if final.words else len(final.text.split())


def _key_point_coverage(
    questions: Sequence[AskedQuestion],
    sentences: dict[int, list[str]],
    encoder: Encoder,
    threshold: float,
) -> dict[int, list[dict[str, Any]]]:
    """For each key point: its best-matching answer unit, the similarity, and whether that covers it."""
    units = {q.index: matching_units(sentences[q.index]) for q in questions}
    # One encoder call for the whole interview: batching is most of the speed.
    texts = [k for q in questions for k in q.key_points]
    texts += [_without_fillers(u) for q in questions for u in units[q.index]]
    vectors = encoder.encode(texts)
    n_points = sum(len(q.key_points) for q in questions)
    point_vectors, unit_vectors = vectors[:n_points], vectors[n_points:]

    result: dict[int, list[dict[str, Any]]] = {}
    p = u = 0
    for q in questions:
        kp = point_vectors[p : p + len(q.key_points)]
        uv = unit_vectors[u : u + len(units[q.index])]
        p += len(q.key_points)
        u += len(units[q.index])
        similarities = kp @ uv.T if len(uv) else np.zeros((len(kp), 0), dtype=np.float32)
        entries = []
        for i, point in enumerate(q.key_points):
            if similarities.shape[1]:
                best = int(np.argmax(similarities[i]))
                # Rounded before the comparison, so "covered" agrees with the number shown.
                similarity = round(float(similarities[i, best]), 2)
                matched: Optional[str] = units[q.index][best]
            else:
                similarity, matched = 0.0, None
            entries.append(
                {"text": point, "covered": similarity >= threshold, "similarity": similarity, "matched": matched}
            )
        result[q.index] = entries
    return result


def _pace(questions: Sequence[AskedQuestion], record: InterviewRecord, t0: float) -> dict[str, Any]:
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
        n = _word_count(f)
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


def _long_pauses(questions: Sequence[AskedQuestion], long_pause_s: float, t0: float) -> list[dict[str, Any]]:
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


def _grammar(
    questions: Sequence[AskedQuestion],
    sentences: dict[int, list[str]],
    transcripts: dict[int, str],
    extra: Sequence[Correction],
) -> list[dict[str, Any]]:
    """Rule-based corrections of every answer sentence, then the LLM's, without repeats."""
    where: dict[str, int] = {}
    found: list[tuple[Optional[int], Correction]] = []
    for q in questions:
        for sentence in sentences[q.index]:
            where.setdefault(sentence, q.index)
            found += [(q.index, c) for c in check_grammar(sentence)]
    seen = {_dedupe_key(c) for _, c in found}
    for c in extra:
        key = _dedupe_key(c)
        if changed_range(c.original, c.suggestion) is None:
            continue  # no word changed: punctuation is Whisper's, not the speaker's
        if key in seen or any(_same_words(c, rule) for _, rule in found):
            continue
        seen.add(key)
        original = c.original.strip()
        # Not one of our sentences (say, a whole final): the question whose answer holds it.
        index = where.get(original) or next(
            (i for i, text in transcripts.items() if original and original in text), None
        )
        found.append((index, c))
    return [
        {
            "question": index,
            "original": c.original,
            "span": c.span,
            "suggestion": c.suggestion,
            "reason": c.reason,
            "rule": c.rule,
            "source": c.source,
        }
        for index, c in found
    ]


def _same_words(a: Correction, b: Correction) -> bool:
    """Two fixes of the same words of the same sentence: one issue, however each words it."""
    if _dedupe_key(a)[0] != _dedupe_key(b)[0]:
        return False
    ra, rb = changed_range(a.original, a.suggestion), changed_range(b.original, b.suggestion)
    return ra is not None and rb is not None and ra[0] < rb[1] and rb[0] < ra[1]


def _dedupe_key(c: Correction) -> tuple[str, str]:
    # The same fix from both sources counts once; spacing and case do not make it new.
    squash = lambda s: " ".join(s.lower().split())  # noqa: E731
    return squash(c.original), squash(c.suggestion)


# ---------------------------------------------------------------- scores


def _clamp(value: float) -> float:
    return round(min(max(value, 0.0), 100.0), 1)


def _scores(
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

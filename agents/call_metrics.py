"""Call metrics for the assist overlay: who talks how much, silences, overlaps and interruptions.

Fed the VAD's utterance bounds of both sides on one shared audio clock, plus
each final's word count. Everything is computed from the utterance intervals
when a snapshot is asked for: a call has a few hundred utterances at most, so
recomputing is cheap, and it keeps the numbers consistent with one another
(an utterance the VAD later drops simply disappears from all of them).

Definitions (times in seconds):
* talk_s[side]: the union of that side's utterance intervals; an utterance
  still in progress counts up to `now_s`.
* talk_share[side]: talk_s[side] / (talk_s[agent] + talk_s[customer]).
* speech_s: the union of both sides' intervals; silence_s = call_s - speech_s,
  so the time before the first word counts as silence too.
* overlap_s: time both sides were speaking (talk_s[agent] + talk_s[customer] - speech_s).
* talk_rate_wps[side]: words of that side's finals / the summed durations of those finals.
* long_silences / longest_silence_s: gaps with nobody speaking between two
  utterances. Not the time before the first speech (the call connecting)
  nor after the last one (the silence is not over yet, and the call may end).

Interruption rule. X interrupts Y when X starts speaking while Y is already
speaking (strictly after Y started; both starting together is nobody's
interruption) and
* they overlap for at least `interruption_min_overlap_s` (0.3 s): shorter
  overlaps are ordinary turn handovers blurred by the VAD's edges (it holds an
  utterance open for a few hundred ms of trailing silence), and
* X's utterance lasts at least `backchannel_max_s` (1.0 s): shorter ones are
  backchannels ("mm-hm", "yeah", "right") that support the speaker rather
  than take the turn.
Y stopping right after X cut in still counts: that is an interruption that worked.
An utterance in progress counts as soon as it meets both conditions so far.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from earshot.server.protocol import SPEAKERS, CallMetricsUpdate, r3


@dataclass(frozen=True)
class CallMetricsConfig:
    long_silence_s: float = 3.0
    interruption_min_overlap_s: float = 0.3
    backchannel_max_s: float = 1.0


@dataclass
class _Utterance:
    start_s: float
    end_s: Optional[float]  # None while the speaker is still talking


Interval = tuple[float, float]


def union(intervals: list[Interval]) -> list[Interval]:
    """The intervals merged where they overlap or touch, in time order."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total(intervals: list[Interval]) -> float:
    return sum(end - start for start, end in intervals)


class CallMetrics:
    def __init__(self, config: CallMetricsConfig = CallMetricsConfig()) -> None:
        self.config = config
        self._utterances: dict[str, list[_Utterance]] = {speaker: [] for speaker in SPEAKERS}
        self._final_words: dict[str, int] = defaultdict(int)
        self._final_s: dict[str, float] = defaultdict(float)
        self._latest_s = 0.0  # the latest time any event mentioned

    def speech_started(self, speaker: str, start_s: float) -> None:
        utterances = self._side(speaker)
        self._close_open(utterances, start_s)  # a missed end: the new start ends it
        utterances.append(_Utterance(start_s, None))
        self._seen(start_s)

    def speech_ended(self, speaker: str, start_s: float, end_s: float, dropped: bool = False) -> None:
        """The VAD closed an utterance; a dropped one was not speech after all and is forgotten."""
        utterances = self._side(speaker)
        if utterances and utterances[-1].end_s is None:
            utterances.pop()
        if not dropped:
            utterances.append(_Utterance(start_s, end_s))
            self._seen(end_s)

    def final(self, speaker: str, start_s: float, end_s: float, word_count: int) -> None:
        self._side(speaker)
        self._final_words[speaker] += word_count
        self._final_s[speaker] += max(end_s - start_s, 0.0)
        self._seen(end_s)

    def spans(self) -> dict[str, list[list[float]]]:
        """Each side's ended utterances as [start, end]: what a resumed call's metrics start from
        (replayed through `speech_ended`, agents/assist_resume.py)."""
        return {
            speaker: [[r3(u.start_s), r3(u.end_s)] for u in utterances if u.end_s is not None]
            for speaker, utterances in self._utterances.items()
        }

    def restore(self, spans: dict[str, tuple[tuple[float, float], ...]], finals: list[tuple[str, float, float, int]]) -> None:
        """A resumed call's earlier part, before any event of the new connection: each side's ended
        utterances (`spans()` as stored) and its finals (speaker, start, end, words)."""
        for speaker, intervals in spans.items():
            for start_s, end_s in intervals:
                self.speech_ended(speaker, start_s, end_s)
        for speaker, start_s, end_s, words in finals:
            self.final(speaker, start_s, end_s, words)

    @property
    def latest_s(self) -> float:
        """The latest time on the audio clock that an event mentioned."""
        return self._latest_s

    def snapshot(self, now_s: float) -> CallMetricsUpdate:
        now = max(now_s, self._latest_s)
        sides = {speaker: self._intervals(speaker, now) for speaker in SPEAKERS}
        talk = {speaker: total(union(intervals)) for speaker, intervals in sides.items()}
        speech = union([interval for intervals in sides.values() for interval in intervals])
        speech_s = total(speech)
        silence_s = max(now - speech_s, 0.0)
        talk_sum = sum(talk.values())
        gaps = [b[0] - a[1] for a, b in zip(speech, speech[1:])]
        return CallMetricsUpdate(
            call_s=r3(now),
            talk_s={speaker: r3(talk[speaker]) for speaker in SPEAKERS},
            talk_share={speaker: r3(talk[speaker] / talk_sum if talk_sum > 0 else 0.0) for speaker in SPEAKERS},
            speech_s=r3(speech_s),
            silence_s=r3(silence_s),
            speech_to_silence=r3(speech_s / silence_s) if silence_s > 0 else None,
            talk_rate_wps={speaker: r3(self._rate(speaker)) for speaker in SPEAKERS},
            interruptions={
                speaker: self._interruptions(sides[speaker], sides[other])
                for speaker, other in zip(SPEAKERS, reversed(SPEAKERS))
            },
            overlap_s=r3(max(talk_sum - speech_s, 0.0)),
            long_silences=sum(1 for gap in gaps if gap >= self.config.long_silence_s),
            longest_silence_s=r3(max(gaps, default=0.0)),
        )

    def _side(self, speaker: str) -> list[_Utterance]:
        if speaker not in self._utterances:
            raise ValueError(f"unknown speaker {speaker!r}: expected one of {', '.join(SPEAKERS)}")
        return self._utterances[speaker]

    def _seen(self, t: float) -> None:
        self._latest_s = max(self._latest_s, t)

    @staticmethod
    def _close_open(utterances: list[_Utterance], end_s: float) -> None:
        if utterances and utterances[-1].end_s is None:
            utterances[-1].end_s = max(end_s, utterances[-1].start_s)

    def _intervals(self, speaker: str, now: float) -> list[Interval]:
        """The side's utterances up to `now`; one in progress ends at `now`."""
        intervals = []
        for u in self._utterances[speaker]:
            end = now if u.end_s is None else min(u.end_s, now)
            if end > u.start_s:
                intervals.append((u.start_s, end))
        return intervals

    def _rate(self, speaker: str) -> float:
        seconds = self._final_s[speaker]
        return self._final_words[speaker] / seconds if seconds > 0 else 0.0

    def _interruptions(self, by: list[Interval], of: list[Interval]) -> int:
        """How many of `by`'s utterances cut into one of `of`'s (the rule is in the module docstring)."""
        count = 0
        for x_start, x_end in by:
            if x_end - x_start < self.config.backchannel_max_s:
                continue
            for y_start, y_end in of:
                started_inside = y_start < x_start < y_end
                if started_inside and min(x_end, y_end) - x_start >= self.config.interruption_min_overlap_s:
                    count += 1
                    break
        return count

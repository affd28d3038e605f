"""Speaking pace: words per second of voiced speech, fillers and long pauses.

Pace counts only time spent speaking: from the start of an utterance's voice
to its end (as the VAD heard it), less any gap between words of
`long_pause_s` or more. Silence between
answers is not slowness, so it never enters the rate; it is reported as long
pauses instead.

Two rates are kept:
* the current utterance's, live from partials and exact from the final;
* a rolling rate over the last `window_s` of audio, which the verdict uses
  because one short phrase says little about how someone speaks.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Optional

from earshot.models.asr import Word
from earshot.models.text import normalize_text

# Said on their own these are fillers. "like" only counts when set off by
# commas ("it was, like, fine"), since "I like it" is not a filler.
SINGLE_FILLERS = frozenset({"um", "uh", "umm", "uhm", "er", "erm", "ah", "hmm", "mm"})
PHRASE_FILLERS = ("you know", "i mean", "sort of", "kind of")
MIN_VOICED_FOR_VERDICT_S = 1.0


@dataclass(frozen=True)
class PaceConfig:
    min_wps: float = 1.0
    max_wps: float = 3.0
    window_s: float = 30.0
    long_pause_s: float = 2.0


@dataclass(frozen=True)
class PaceReport:
    wps: float  # current utterance
    window_wps: float  # rolling window, what the verdict judges
    window_s: float
    verdict: str  # "good", "too_slow", "too_fast", or "listening" before enough speech
    fillers: int
    filler_counts: dict[str, int]
    long_pauses: int
    total_words: int
    voiced_s: float  # all voiced time so far
    final: bool  # from a final (exact) or a partial (live estimate)


def count_fillers(text: str) -> Counter:
    counts: Counter = Counter()
    likes = len(re.findall(r"(?:^|,)\s*like\s*(?=,)", text.lower()))
    if likes:
        counts["like"] = likes
    normalized = " " + normalize_text(text) + " "
    for phrase in PHRASE_FILLERS:
        n = normalized.count(" " + phrase + " ")
        if n:
            counts[phrase] += n
    for word in normalized.split():
        if word in SINGLE_FILLERS:
            counts[word] += 1
    return counts


def long_gaps_inside(words: tuple[Word, ...], long_pause_s: float) -> tuple[float, int]:
    """Total length and count of the gaps between words of at least `long_pause_s`."""
    gaps = [b.start - a.end for a, b in zip(words, words[1:]) if b.start - a.end >= long_pause_s]
    return sum(gaps), len(gaps)


@dataclass(frozen=True)
class _Spoken:
    end_s: float
    words: int
    voiced_s: float


class PaceTracker:
    def __init__(self, config: PaceConfig) -> None:
        self.config = config
        self._history: deque[_Spoken] = deque()
        self._fillers: Counter = Counter()
        self._long_pauses = 0
        self._total_words = 0
        self._total_voiced_s = 0.0
        self._last_speech_end_s: Optional[float] = None

    def on_utterance_start(self, start_s: float) -> None:
        if self._last_speech_end_s is not None and start_s - self._last_speech_end_s >= self.config.long_pause_s:
            self._long_pauses += 1

    def on_partial(self, text: str, start_s: float, audio_end_s: float) -> PaceReport:
        """Live estimate while the speaker is still talking."""
        n_words = len(text.split())
        voiced = max(audio_end_s - start_s, 0.0)
        live = _Spoken(end_s=audio_end_s, words=n_words, voiced_s=voiced)
        return self._report(live, fillers=self._fillers + count_fillers(text), final=False)

    def on_final(self, text: str, words: tuple[Word, ...], start_s: float, end_s: float) -> PaceReport:
        # The VAD bounds are the speaking time (Whisper's first-word times drift early);
        # the word timings only tell which long gaps inside it to take out.
        gaps_s, long_gaps = long_gaps_inside(words, self.config.long_pause_s)
        voiced = max(end_s - start_s - gaps_s, 0.0)
        n_words = len(words) if words else len(text.split())
        spoken = _Spoken(end_s=end_s, words=n_words, voiced_s=voiced)
        self._history.append(spoken)
        self._fillers += count_fillers(text)
        self._long_pauses += long_gaps
        self._total_words += n_words
        self._total_voiced_s += voiced
        self._last_speech_end_s = end_s
        return self._report(spoken, fillers=self._fillers, final=True)

    def _report(self, current: _Spoken, fillers: Counter, final: bool) -> PaceReport:
        window_start = current.end_s - self.config.window_s
        while self._history and self._history[0].end_s < window_start:
            self._history.popleft()
        in_window = list(self._history) if final else [*self._history, current]
        words = sum(s.words for s in in_window)
        voiced = sum(s.voiced_s for s in in_window)
        window_wps = words / voiced if voiced > 0 else 0.0
        if voiced < MIN_VOICED_FOR_VERDICT_S:
            verdict = "listening"
        elif window_wps < self.config.min_wps:
            verdict = "too_slow"
        elif window_wps > self.config.max_wps:
            verdict = "too_fast"
        else:
            verdict = "good"
        return PaceReport(
            wps=round(current.words / current.voiced_s, 2) if current.voiced_s > 0 else 0.0,
            window_wps=round(window_wps, 2),
            window_s=self.config.window_s,
            verdict=verdict,
            fillers=sum(fillers.values()),
            filler_counts=dict(fillers),
            long_pauses=self._long_pauses,
            total_words=self._total_words + (0 if final else current.words),
            voiced_s=round(self._total_voiced_s + (0 if final else current.voiced_s), 2),
            final=final,
        )

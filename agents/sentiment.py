"""The customer's sentiment, utterance by utterance, and which way it is heading.

VADER (the `vaderSentiment` package) scores each final: a lexicon of ~7,500
rated words plus rules for negation ("not happy"), intensifiers ("so much")
and contrast ("but"). Its lexicon ships inside the package, so nothing is
downloaded, and a score takes ~0.1 ms, so it runs on the event loop. It works
on ASR text as it comes (with or without Whisper's casing and punctuation;
capitals and "!" only strengthen a score).

* score: VADER's compound score in [-1, 1].
* label: positive at >= 0.05, negative at <= -0.05, else neutral (the
  thresholds VADER's authors recommend).
* trend: the least-squares slope of the last `window` scores times (n - 1),
  i.e. the fitted change from the oldest to the newest, clipped to [-1, 1].
  A fit rather than last-minus-first, so one odd utterance at either end moves
  it less. improving at >= `steady_band`, worsening at <= -`steady_band`, else steady.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from earshot.server.protocol import SentimentUpdate, r3

POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05

# Support-call words VADER's general lexicon rates neutral or the wrong way
# round, on its -4 .. 4 scale. "working" lets "still not working" read
# negative through VADER's negation rule; "joke" is praise in VADER but
# "this is a joke" on a support line is not.
CALL_LEXICON = {
    "outage": -1.9,
    "overcharged": -2.0,
    "disconnected": -1.2,
    "disconnects": -1.2,
    "dropping": -0.8,
    "slow": -0.9,
    "unresolved": -1.5,
    "waiting": -0.5,
    "joke": -1.0,
    "working": 0.9,
    "works": 0.9,
    "fixed": 1.5,
}


@dataclass(frozen=True)
class SentimentConfig:
    window: int = 5  # customer utterances the trend looks at
    steady_band: float = 0.15  # |trend| below this is steady


def sentiment_label(score: float) -> str:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


def trend_of(scores: list[float]) -> float:
    """The fitted change across `scores` (oldest first), clipped to [-1, 1]; 0 for fewer than two."""
    n = len(scores)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(scores) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(scores)) / sum(
        (x - mean_x) ** 2 for x in range(n)
    )
    return max(-1.0, min(1.0, slope * (n - 1)))


class SentimentTracker:
    """One per call: scores the customer's finals and keeps the recent ones for the trend."""

    def __init__(self, config: SentimentConfig = SentimentConfig()) -> None:
        self.config = config
        # Each analyzer reads its own copy of the lexicon (~10 ms), so adding
        # the call words here changes no one else's.
        self._analyzer = SentimentIntensityAnalyzer()
        self._analyzer.lexicon.update(CALL_LEXICON)
        self._recent: deque[float] = deque(maxlen=config.window)

    def score(self, text: str) -> float:
        """VADER's compound score of `text`, without recording it."""
        return float(self._analyzer.polarity_scores(text)["compound"])

    def add(self, speaker: str, utterance_id: int, text: str) -> SentimentUpdate:
        score = self.score(text)
        self._recent.append(score)
        history = list(self._recent)
        trend = trend_of(history)
        if trend >= self.config.steady_band:
            trend_label = "improving"
        elif trend <= -self.config.steady_band:
            trend_label = "worsening"
        else:
            trend_label = "steady"
        return SentimentUpdate(
            speaker=speaker,
            utterance_id=utterance_id,
            score=r3(score),
            label=sentiment_label(score),
            trend=r3(trend),
            trend_label=trend_label,
            history=[r3(s) for s in history],
        )

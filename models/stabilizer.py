"""LocalAgreement-2: which words of a growing hypothesis are safe to show as settled.

Each partial decode re-reads the whole utterance so far, and Whisper may change
its mind about the last few words as more audio arrives. A word is committed
once two consecutive hypotheses agree on it and on everything before it; the
committed prefix only ever grows, so a user never sees settled text change.
The rest of the newest hypothesis is shown as the tentative tail.
"""

from __future__ import annotations

import re


def _key(word: str) -> str:
    # "modern," and "Modern." are the same word for agreement purposes.
    return re.sub(r"[^\w']", "", word.lower())


class LocalAgreement:
    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] = []

    def update(self, hypothesis: list[str]) -> tuple[list[str], list[str]]:
        """Take the newest hypothesis' words; return (committed, tentative)."""
        agreed = 0
        for old, new in zip(self._previous, hypothesis):
            if _key(old) != _key(new):
                break
            agreed += 1
        consistent = all(_key(a) == _key(b) for a, b in zip(self.committed, hypothesis))
        if consistent and agreed > len(self.committed):
            self.committed = self.committed + hypothesis[len(self.committed) : agreed]
        self._previous = hypothesis
        return list(self.committed), hypothesis[len(self.committed) :]

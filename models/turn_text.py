"""Do the words so far stop in the middle of a phrase? A text check beside the end-of-turn model.

Smart Turn hears the audio only, and on read speech it often takes a short
pause after "in the middle of" or "on the" for the end of a turn (the turn
set, tests/data/turns: 7 of its 9 mid-clause pauses scored above 0.5 at
200 ms). The words Whisper heard up to the pause say what the audio model
missed: no English sentence ends on an article, a possessive, "of", a
conjunction or a filler. When the model calls a turn complete but the
transcript of the utterance so far ends on one of these words, the turn is
held (server/endpointing.py asks again as the pause grows, up to the
fallback silence).

Where two people talk (assist calls, `earshot transcribe`), a pause after a
digit group is held too (`ends_on_a_number`): a phone or card number is read
out in groups, and a number cut into two finals escapes redaction, which sees
one final at a time. There it costs nothing but a later end, at most the
silence rule's. In an interview it would hold the reply after "since 2019."
to the fallback, so it is not done there.

Only words that (almost) never end a sentence are listed: not "to", "in",
"for", "with", "about" ("what it's about"), not "so", "that", "it", and no
auxiliaries ("that's how it was").
"""

from __future__ import annotations

import re

UNFINISHED_LAST_WORDS = frozenset(
    """
    a an the
    my your our their its
    of against
    and or but nor because although whereas unless whether than if
    very quite rather
    um uh er erm uhm hmm
    """.split()
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_LAST_TOKEN_A_NUMBER = re.compile(r"\d[\d,\-]*[.,!?]?\s*$")


def sounds_unfinished(text: str) -> bool:
    """True when `text` stops on a word no sentence ends with, or on a dash or an ellipsis."""
    stripped = text.rstrip()
    if stripped.endswith(("-", "—", "...", "…")):
        return True
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in UNFINISHED_LAST_WORDS


def ends_on_a_number(text: str) -> bool:
    """True when `text` stops on a digit group ("... at 415." or "4111 1111"): a number being read out
    is read in groups, with pauses between them, and one cut at a pause escapes redaction."""
    return bool(_LAST_TOKEN_A_NUMBER.search(text))

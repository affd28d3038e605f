"""Whisper's spoken forms of numbers and e-mail addresses, rewritten as written ones, with a map back.

A caller who reads out a card number is transcribed as "four one one one one
one ..."; an address as "mark dot rivera at gmail dot com". The recognisers
look for written forms, so the redactor runs them on a normalised copy of the
line and maps each span they find back to the original text (`Normalised.span`).
This module rewrites e-mail addresses and builds the map; numbers.py reads the
number runs.

Rewritten:
- runs of number words, digit by digit or as cardinals, with the pieces of a run
  joined: "four one five, five five five" -> 4155555, "oh"/"zero" -> 0,
  "double five" -> 55, "triple seven" -> 777, "forty two" -> 42,
  "nineteen eighty four" -> 1984, "eight hundred" -> 800, "two thousand and
  five" -> 2005, "twenty third" -> 23rd; "dash"/"hyphen" -> "-", "slash" -> "/",
  "plus" -> "+"; commas, hyphens and full stops between the members of a run
  are dropped. Capital letters spelled inside a run join it ("G B eight two"
  -> GB82), and so do written digits ("4, 1, 1, 1" -> 4111, "four 1 1 1").
- written digit groups that Whisper split its own way, when they hold 7 digits or
  more and are not a list of years: "53622 8147" -> 536228147, "07911, 1234566"
  -> 079111234566 (hyphens stay: "415-555-0132" is a form the recognisers know).
- spoken e-mail addresses: "mark dot rivera at gmail dot com" -> mark.rivera@gmail.com.

The copy is never shown: only the spans a recogniser finds are replaced, in the
original text. Money, counts and years become digits in the copy
("forty nine dollars ninety nine" -> "49 dollars 99", "four layers" -> "4
layers") and no recogniser takes those for personal data (the labelled set's
clean lines check it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from earshot.models.redaction.numbers import REPEATS, TEENS, TENS, UNITS, number_runs, runs_of, tokens_of, write_run

# --- e-mail addresses ------------------------------------------------------------------------------
_TLDS = "com|net|org|edu|gov|io|co|uk|ca|de|fr|au|ie|nz|info|biz|ai|app|dev|tv|eu|nl|es|ch|se|dk|fi|pl|be|jp|mx|br|me"
_PART = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_NUMBER_WORD = "(?:" + "|".join(sorted({*UNITS, *TEENS, *TENS, *REPEATS} - {"o"}, key=len, reverse=True)) + ")"
# Between the pieces of an address's first part: a spoken or written separator, or a space before a number word
# ("rivera eighty four at ...").
_LOCAL_SEP = rf"(?:\s+(?:dot|underscore|dash|hyphen)\s+|[._-]|\s+(?={_NUMBER_WORD}\b))"
_DOMAIN_SEP = r"(?:\s+dot\s+|\.)"
# The pieces are bounded: unbounded, a long line of number words (or of "a.a.a...") takes quadratic time to fail.
_EMAIL = re.compile(
    rf"\b(?P<local>{_PART}(?:{_LOCAL_SEP}{_PART}){{0,8}})(?P<at>\s+at\s+|\s*@\s*)"
    rf"(?P<domain>{_PART}(?:{_DOMAIN_SEP}{_PART}){{0,4}}{_DOMAIN_SEP}(?:{_TLDS}))\b",
    re.IGNORECASE,
)
_SPOKEN_SEP = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# Mail providers: "rivera at gmail dot com" is an address even without a cue or a dot in its first part.
MAIL_DOMAINS = frozenset({"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "msn", "icloud", "me", "mac",
                          "aol", "proton", "protonmail", "pm", "gmx", "mail", "comcast", "verizon", "btinternet",
                          "zoho", "fastmail", "yandex"})
_EMAIL_CUE = re.compile(r"\be-?mail\b", re.IGNORECASE)
# Words before "at" that are never the whole first part of an address ("find us at earshot dot io").
_NOT_LOCAL = frozenset({"us", "it", "me", "him", "her", "them", "you", "that", "this", "home", "look", "looking",
                        "find", "here", "there", "one", "site", "website", "online", "web", "page", "store", "shop"})


@dataclass(frozen=True)
class Normalised:
    """The rewritten line, and for each of its characters the span of the original it came from."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind `text[start:end]` (end > start)."""
        return self.starts[start], self.ends[end - 1]


def normalise(text: str) -> Normalised:
    """`text` with its spoken numbers and e-mail addresses written out; identity (cheap) when it has none."""
    replacements = _email_replacements(text)
    taken = [(start, end) for start, end, _ in replacements]
    tokens = [t for t in tokens_of(text) if not any(s <= t.start < e for s, e in taken)]
    return _apply(text, sorted(replacements + number_runs(text, tokens)))


def _apply(text: str, replacements: list[tuple[int, int, str]]) -> Normalised:
    if not replacements:
        span = tuple(range(len(text)))
        return Normalised(text, span, tuple(i + 1 for i in span))
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cursor = 0
    for start, end, new in replacements:
        pieces.append(text[cursor:start])
        starts.extend(range(cursor, start))
        ends.extend(range(cursor + 1, start + 1))
        pieces.append(new)
        starts.extend([start] * len(new))
        ends.extend([end] * len(new))
        cursor = end
    pieces.append(text[cursor:])
    starts.extend(range(cursor, len(text)))
    ends.extend(range(cursor + 1, len(text) + 1))
    return Normalised("".join(pieces), tuple(starts), tuple(ends))


# --- e-mail ----------------------------------------------------------------------------------------
def _email_replacements(text: str) -> list[tuple[int, int, str]]:
    found = []
    for match in _EMAIL.finditer(text):
        local, at, domain = match.group("local"), match.group("at"), match.group("domain")
        if "@" in at and " " not in match.group() and " dot " not in domain.lower():
            continue  # already written: the e-mail recogniser reads it as it is
        provider = re.split(_DOMAIN_SEP, domain, flags=re.IGNORECASE)[0].lower()
        joined = re.search(r"\s+(?:dot|underscore|dash|hyphen)\s+|[._-]", local, flags=re.IGNORECASE) is not None
        if not joined and (local.lower() in _NOT_LOCAL or not (
                provider in MAIL_DOMAINS or _EMAIL_CUE.search(text, 0, match.start()))):
            continue
        written = _local_part(local) + "@" + _spoken_joins(domain, _DOMAIN_SEP)
        found.append((match.start(), match.end(), written))
    return found


def _local_part(local: str) -> str:
    """"m underscore rivera eighty four" -> m_rivera84."""
    joined = _spoken_joins(local, r"\s+(?:dot|underscore|dash|hyphen)\s+")
    out, cursor = [], 0
    for run in runs_of(tokens_of(joined)):
        out.append(joined[cursor:run[0].start])
        out.append(write_run(run))
        cursor = run[-1].end
    out.append(joined[cursor:])
    return "".join(out).replace(" ", "")


def _spoken_joins(part: str, separator: str) -> str:
    def join(match: re.Match) -> str:
        word = match.group().strip().lower()
        return _SPOKEN_SEP.get(word, word)

    return re.sub(separator, join, part, flags=re.IGNORECASE)

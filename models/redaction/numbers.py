"""Runs of number words (and spelled capitals, and Whisper's digit groups) read as digits.

The reading half of spoken.py: `number_runs(text, tokens)` finds the runs in a
line's tokens and writes each as the digits it stands for, as (start, end,
written) replacements. What it reads, with examples, is in spoken.py's
docstring; this module holds the vocabulary, the runs and a small parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

UNITS = {"zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
         "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
SCALES = {"hundred": 100, "thousand": 1000}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
            "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
            "twentieth": 20, "thirtieth": 30}
REPEATS = {"double": 2, "triple": 3}
SYMBOLS = {"dash": "-", "hyphen": "-", "slash": "/", "plus": "+"}
NUMBER_WORDS = frozenset(UNITS) | frozenset(TEENS) | frozenset(TENS) | frozenset(SCALES) | frozenset(ORDINALS)

# Words, digit groups, and any other single character (spaces are skipped).
TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|\S")
_JOINERS = frozenset({",", "-", "."})  # between two members of a run, dropped
_YEAR = re.compile(r"(?:19|20)\d\d")
_OWN_GAP = re.compile(r"\s+|,\s+|\s*-\s*")  # between written digit groups that Whisper grouped its own way


@dataclass(frozen=True)
class Token:
    """A word, a digit group or a mark, with its place in the line (names.py reads lines as these too)."""

    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


def tokens_of(text: str) -> list[Token]:
    return [Token(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def number_runs(text: str, tokens: list[Token]) -> list[tuple[int, int, str]]:
    """(start, end, digits) for each run of numbers in `tokens` that reads differently written out."""
    found = []
    for run in runs_of(tokens):
        for piece in _years_apart(text, run):
            written = _write_run(text, piece)
            if written is not None:
                found.append((piece[0].start, piece[-1].end, written))
    return found


def write_run(run: list[Token]) -> str:
    """A run read as it is said (for the first part of a spoken e-mail address)."""
    return _Cardinals().write(run)


def _member(token: Token, previous: Optional[Token]) -> bool:
    word = token.lower
    if word == "and":  # "one hundred and five", "two thousand and one"; not "twenty twenty and twenty twenty one"
        return previous is not None and previous.lower in SCALES
    return word in NUMBER_WORDS or word in REPEATS or word in SYMBOLS or token.text.isdigit() or _spelled(token)


def _years_apart(text: str, run: list[Token]) -> list[list[Token]]:
    """A spoken list of years ("twenty nineteen, twenty twenty") as one run per year, not one long number."""
    pieces: list[list[Token]] = [[run[0]]]
    for previous, token in zip(run, run[1:]):
        if "," in text[previous.end:token.start]:
            pieces.append([])
        pieces[-1].append(token)
    if len(pieces) > 1 and all(_YEAR.fullmatch(_write_run(text, piece) or "") for piece in pieces):
        return pieces
    return [run]


def _spelled(token: Token) -> bool:
    """A capital letter on its own: spelled out ("G B eight two ...")."""
    return len(token.text) == 1 and token.text.isupper()


def runs_of(tokens: list[Token]) -> list[list[Token]]:
    """Maximal sequences of candidate members with only joiners (or nothing) between them."""
    runs: list[list[Token]] = []
    current: list[Token] = []
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        previous = tokens[index - 1] if index else None
        if len(token.text) == 1 and token.text.islower() and following is not None and _spelled(following):
            # "a B 1 2 3 4 5 6 C": Whisper lowercased the first spelled letter
            token = Token(token.text.upper(), token.start, token.end)
        if _member(token, previous):
            current.append(token)
            if token.lower in ORDINALS:  # "May twenty third, nineteen eighty four": the day ends there
                runs.append(current)
                current = []
        elif token.text in _JOINERS and current:
            continue
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [trimmed for run in runs if (trimmed := _trim(run))]


def _spoken_number(token: Token) -> bool:
    word = token.lower
    return word in NUMBER_WORDS or word in REPEATS


def _trim(run: list[Token]) -> list[Token]:
    """Drop what cannot begin or end a run, and runs without a number in them."""
    while run and (run[-1].lower == "and" or run[-1].lower in REPEATS or run[-1].lower in SYMBOLS):
        run = run[:-1]
    while run and (run[0].lower == "and" or run[0].lower in SYMBOLS and run[0].lower != "plus"):
        run = run[1:]
    letters = 0
    while letters < len(run) and _spelled(run[letters]) and not _spoken_number(run[letters]):
        letters += 1
    if letters == 1:
        run, letters = run[letters:], 0  # "I four one ..." : a lone capital is not spelled
    if not letters:
        while run and _spelled(run[-1]) and not _spoken_number(run[-1]):
            run = run[:-1]  # "one two three A": trailing capitals only after leading ones
    while run and run[0].lower in ("oh", "o") and len(run) > 1 and not _numeric(run[1]):
        run = run[1:]
    numbers = [t for t in run if _numeric(t)]
    if not numbers or all(t.lower in ("oh", "o") for t in numbers):
        return []
    return run


def _numeric(token: Token) -> bool:
    return token.text.isdigit() or _spoken_number(token)


def _write_run(text: str, run: list[Token]) -> Optional[str]:
    """The run written as digits, or None to leave it as it is."""
    if any(_spoken_number(t) or t.lower in SYMBOLS for t in run):
        return _Cardinals().write(run)
    digits = [t.text for t in run if t.text.isdigit()]
    if len(digits) >= 4 and all(len(d) == 1 for d in digits):
        return "".join(t.text for t in run)  # Whisper spelling digits out: "4, 1, 1, 1", "4-1-1-1"
    gaps = [text[a.end:b.start] for a, b in zip(run, run[1:])]
    years = all(len(d) == 4 and d[:2] in ("19", "20") for d in digits)
    # spaces, ", " and hyphens among them; not "40,000,000" (thousands) and not hyphens alone ("415-555-0132")
    own_grouping = all(_OWN_GAP.fullmatch(gap) for gap in gaps) and any(gap.strip() != "-" for gap in gaps)
    if len(run) > 1 and own_grouping and len("".join(digits)) >= 7 and not years:
        # Whisper's own grouping of a number read out: "53622 8147" (an SSN), "07911, 1234566" (a phone)
        return "".join(t.text for t in run)
    return None  # "415-555-0132", "2022", "2019, 2020": the recognisers read these written forms as they are


class _Cardinals:
    """Reads a run's members left to right: digit by digit, or cardinals, concatenated as they are said."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.value: Optional[int] = None  # the cardinal being read
        self.open = ""  # what it still takes: "unit" after a tens word, "scale" after hundred/thousand, "and"
        self.hundred = self.thousand = False
        self.repeat = 0  # "double" or "triple" waiting for its digit

    def flush(self) -> None:
        if self.value is not None:
            self.parts.append(str(self.value))
        self.value, self.open, self.hundred, self.thousand = None, "", False, False

    def start(self, value: int, open_: str = "") -> None:
        self.flush()
        self.value, self.open = value, open_

    def write(self, run: list[Token]) -> str:
        for index, token in enumerate(run):
            word = token.lower
            following = run[index + 1].lower if index + 1 < len(run) else ""
            if self.repeat and word in UNITS:
                self.parts.append(str(UNITS[word]) * self.repeat)
                self.repeat = 0
            elif word in REPEATS:
                self.flush()
                self.repeat = REPEATS[word]
            elif word in UNITS:
                self.unit(UNITS[word], word)
            elif word in TEENS:
                self.add_or_start(TEENS[word], "")
            elif word in TENS:
                self.add_or_start(TENS[word], "unit")
            elif word in ORDINALS:
                self.ordinal(ORDINALS[word])
            elif word in SCALES:
                self.scale(SCALES[word])
            elif word == "and" and self.open == "scale" and following in NUMBER_WORDS:
                self.open = "and"
            elif word == "and":
                self.flush()
                self.parts.append(" and ")
            elif word in SYMBOLS:
                self.flush()
                self.parts.append(SYMBOLS[word])
            else:  # written digits, spelled capitals
                self.flush()
                self.parts.append(token.text)
        self.flush()
        return "".join(self.parts)

    def unit(self, value: int, word: str) -> None:
        # "forty two", "one hundred and five", "two thousand five"; not "eight hundred five five five" (a phone number)
        adds = self.open in ("unit", "and") or (self.open == "scale" and self.thousand and not self.hundred)
        if self.value is not None and adds and word not in ("oh", "o"):
            self.value += value
            self.open = ""
        else:
            self.start(value)

    def add_or_start(self, value: int, open_: str) -> None:
        if self.value is not None and self.open in ("scale", "and"):
            self.value += value
            self.open = open_
        else:
            self.start(value, open_)

    def ordinal(self, value: int) -> None:
        if self.value is not None and (self.open in ("scale", "and") or (self.open == "unit" and value < 10)):
            value += self.value
            self.value = None
        self.flush()
        suffix = "th" if 10 <= value % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
        self.parts.append(f"{value}{suffix}")

    def scale(self, scale: int) -> None:
        low = None if self.value is None else self.value % 1000
        if scale == 100 and low and low < 100 and not self.hundred:
            self.value += low * 99  # "nineteen hundred", "two thousand five hundred"
            self.hundred = True
        elif scale == 1000 and self.value is not None and self.value < 1000 and not self.thousand:
            self.value *= 1000
            self.thousand, self.hundred = True, False
        else:
            self.start(scale)  # "hundred" on its own
            self.hundred, self.thousand = scale == 100, scale == 1000
        self.open = "scale"

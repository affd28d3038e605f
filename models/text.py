"""Text normalisation, English number words, and word edit distance, for the product's own comparisons.

The one normaliser for what the product compares words for: voice commands,
the pace agent's filler counts, grammar suggestions. Whisper writes "1455",
"Mr." and "ill-disposed" where people write "fourteen fifty-five", "mister" and
"ill disposed", so both sides go through `normalize_text` before they are
compared. Word error rates (tests, benchmarks, load tests) are measured as
published ASR results measure them instead: earshot.loadtest.wer.
"""

from __future__ import annotations

import re

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip

_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "st": "saint",
    "vs": "versus",
    "ie": "ie",
    "eg": "eg",
}
_PHRASES = {
    "et cetera": "etc",
    "okay": "ok",
    "o k": "ok",
}


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else "-" + _ONES[ones])


def number_to_words(n: int) -> str:
    """Cardinal English words as Whisper spells them out ("forty-two", "three hundred five").

    Up to 10**12; beyond, digit by digit.
    """
    if n < 100:
        return _below_hundred(n)
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + _below_hundred(rest))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if size <= n < 1000 * size:
            high, rest = divmod(n, size)
            return number_to_words(high) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    return digit_words(str(n))


def digit_words(digits: str) -> str:
    """Digit by digit, as account and phone numbers are read: "2291" -> "two two nine one"."""
    return " ".join(_ONES[int(d)] for d in digits)


def year_words(n: int) -> str:
    """A four-digit year read in pairs: "nineteen eighty-two", "nineteen oh five", "nineteen hundred"."""
    high, low = divmod(n, 100)
    if low == 0:
        return _below_hundred(high) + " hundred"
    return _below_hundred(high) + " " + (_below_hundred(low) if low >= 10 else "oh " + _ONES[low])


def ordinal_words(n: int) -> str:
    """Ordinal words: "first", "twelfth", "twenty-first", "one hundredth"."""
    words = number_to_words(n)
    head, sep, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    else:
        last = last[:-1] + "ieth" if last.endswith("y") else last + "th"
    return head + sep + last


def _spoken_number(digits: str) -> str:
    """A number as reference transcripts write it out."""
    n = int(digits)
    # Years are read in pairs: 1455 -> "fourteen fifty-five", as the references write them.
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099) and n % 100 != 0:
        return year_words(n)
    if n >= 10**12:
        return digit_words(digits)
    return number_to_words(n)


def normalize_text(text: str) -> str:
    """Lower case, words only, numbers spelled out, common abbreviations expanded."""
    text = text.lower()
    text = text.replace("’", "'").replace("‘", "'")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"(\d+)%", r"\1 percent", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", r"\1", text)
    text = re.sub(r"\d+", lambda m: " " + _spoken_number(m.group()) + " ", text)
    text = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", text)  # i.e. -> ie.
    text = re.sub(r"[^a-z' ]+", " ", text)  # punctuation and hyphens become spaces
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes inside words
    words = [_ABBREVIATIONS.get(word, word) for word in text.split()]
    joined = " ".join(words)
    for phrase, replacement in _PHRASES.items():
        joined = re.sub(rf"\b{phrase}\b", replacement, joined)
    return joined


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after normalisation."""
    ref = normalize_text(reference).split()
    hyp = normalize_text(hypothesis).split()
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1], len(ref)

"""The a/an rule: which sound a written word starts with, and the article it takes.

The letter is not the sound ("a user", "an hour", "an API"), so the rule
decides only where the word's first sound is certain, and stays silent
otherwise.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

from earshot.agents.grammar_rules import Fix, Token, match_case
from earshot.agents.pace import SINGLE_FILLERS

# Vowel letter, consonant sound ("a user", "a one-time fee", "a European").
_YOO_WORDS = frozenset(
    """use uses used useful useless user users usual usually usage usability utility utilities
    utilization utilize utilise unique uniquely uniqueness unit units unity united union unions
    universal universally universe university universities uniform uniforms unified unify unicode
    unicorn unilateral unanimous unary unison unix uranium urinary usurp utensil uterus utopia
    utopian ubiquitous ukulele ukrainian uri urine ewe once""".split()
)
# Consonant letter, vowel sound ("an hour", "an honest mistake").
_SILENT_H_WORDS = frozenset(
    """hour hours hourly honest honestly honesty honor honors honour honours honorable
    honourable honorary honoured honored heir heirs heiress""".split()
)
# A u-word starting like these is the "uh" sound (an update, an unclear spec).
# Other u-words are skipped: "usual" and "usher" start alike and sound unlike.
_UH_PREFIXES = ("up", "umb", "ump", "ult", "ugl", "utt", "urb", "urg", "ul")
# Acronyms said letter by letter; their first letter's name decides ("an API",
# "a URL"). Acronyms said as words by many (NASA, SQL "sequel", FAQ "fack",
# RAM, ROI "roy") are not listed, so neither article is flagged before them.
_LETTER_ACRONYMS = frozenset(
    """API APIs AI HTTP HTTPS HTML LLM LLMs ML MBA SDK SLA SLAs NLP MVP HR SEO XML URL URLs UI UX
    AWS ETL KPI KPIs CEO CTO CFO CRM CSV SMS IT QA IDE OS CPU GPU CI CD PR PhD MSc BSc
    EU UK US USB VM VPN DNS TCP UDP IP ORM SSD HDD SVM LSTM RNN CNN NPS CSAT""".split()
)
# Two-consonant starts of English words; other pairs mean a spelled-out abbreviation.
_ONSETS = frozenset(
    """bl br ch cl cr dr dw fl fr gh gl gn gr kl kn kr ph pl pn pr ps pt qu rh sc sh sk sl sm sn sp sq st
    sw th tr tw wh wr""".split()
)
_VOWEL_LETTER_NAMES = frozenset("AEFHILMNORSX")  # "eh", "ef", "aitch", "el", "em", "en", "ess", "ex"...
# "a" before these is a letter or a label ("a or b", "vitamin a is"), not an article.
_NOT_AFTER_ARTICLE = frozenset(
    """and or nor is are was were of in on at as if it its to into an a the i also but so than
    then via per vs""".split()
)


def _sound(word: str) -> Optional[str]:
    """'vowel' or 'consonant' for the sound `word` starts with; None when unsure."""
    head = re.split(r"[-'’]", word)[0]  # "one-time" sounds like "one"
    if head.isdigit():
        if head.startswith("8") or head in ("11", "18"):
            return "vowel"  # eight, eighty, eleven, eighteen
        if head.startswith(("11", "18")):
            return None  # 1100 may be "eleven hundred" or "one thousand one hundred"
        return "consonant"
    if len(head) < 2:
        return None  # "a B grade", "an x-ray": the letter's name decides, skip
    if head.isupper() or head in _LETTER_ACRONYMS:
        if head in _LETTER_ACRONYMS:
            return "vowel" if head[0] in _VOWEL_LETTER_NAMES else "consonant"
        return None
    if any(c.isupper() for c in head[1:]):
        return None  # CamelCase names (RLock, PyTorch) are often read as letters
    low = head.lower()
    if not low.isalpha() or not re.search(r"[aeiouy]", low):
        return None  # "an fd", "an rgb": letters read out one by one
    if low in _SILENT_H_WORDS:
        return "vowel"
    if low.startswith("euler"):
        return None  # "oiler": the one eu- word that starts with a vowel sound
    if low in _YOO_WORDS or low.startswith("eu") or (low.startswith("one") and not low.startswith("oner")):
        # eu- is "you"; one- is "won" (oneself, one-off, oneof), except onerous
        return "consonant"
    first = low[0]
    if first == "h":
        return None  # "an historic" is old-fashioned, not wrong; "a hotel" is never flagged anyway
    if first in "aeio":
        return "vowel"
    if first == "u":
        if low.startswith("un") and len(low) > 2 and low[2] not in "ai":
            return "vowel"  # the un- prefix: unclear, unusual, unexpected (not unique, unanimous)
        return "vowel" if low.startswith(_UH_PREFIXES) else None
    if first == "x":
        return None  # "an X-ray", "a xylophone"
    if low[1] not in "aeiouy" and low[:2] not in _ONSETS:
        return None  # no English word starts "sd" or "mb": "an sdist", "an mbox" are read as letters
    return "consonant"


def articles(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (article, nxt) in enumerate(zip(tokens, tokens[1:])):
        if article.low not in ("a", "an") or not nxt.joined:
            continue
        # A capital "A" mid-sentence is a letter (Plan A, grade A), not an article.
        if article.text == "A" and i > 0:
            continue
        if nxt.low in _NOT_AFTER_ARTICLE or nxt.low in SINGLE_FILLERS:
            continue
        sound = _sound(nxt.text)
        if article.low == "a" and sound == "vowel":
            wanted = "an"
        elif article.low == "an" and sound == "consonant":
            wanted = "a"
        else:
            continue
        spoken = "a vowel" if wanted == "an" else "a consonant"
        yield Fix(
            article.start,
            article.end,
            match_case(article.text, wanted),
            f'Use "{wanted}" before {spoken} sound: "{wanted} {nxt.text}".',
            "article_a_an",
        )

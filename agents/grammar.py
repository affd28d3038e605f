"""Grammar corrections for the interview report.

Two sources:

* `check_grammar`: a dozen hand-written rules that run on the CPU in
  microseconds. Every rule is narrow on purpose. The input is speech as
  Whisper wrote it, and a wrong correction in a report costs more trust than a
  missed one, so each rule fires only on word patterns that are wrong in every
  reading we could think of, and skips anything ambiguous ("more older people"
  can mean "a greater number of older people"; "the people who like it don't"
  has "it" as an object).
* `llm_grammar_review`: a capable LLM, when the server has one, asked for a
  strict one-line-per-fix format; whatever it says is checked before it is
  believed.

Fillers ("um", "you know") are not grammar: the pace report counts them. A
rule never fires across a filler or a comma, since both mark a break in what
the speaker said.

Here: the corrections and `check_grammar`, which runs the rules of
grammar_rules.py and grammar_articles.py. The LLM review is in grammar_llm.py.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Optional

from earshot.agents.grammar_articles import articles
from earshot.agents.grammar_rules import RULES, Fix, tokenize


@dataclass(frozen=True)
class Correction:
    original: str  # the whole sentence as transcribed
    suggestion: str  # the whole sentence with this one fix applied
    reason: str  # for the candidate, in plain words
    rule: str  # machine id: article_a_an, repeated_word, ... or "llm"
    source: str = "rules"  # "rules" | "llm"
    span: str = ""  # the offending words inside `original`


def _apply(sentence: str, fix: Fix) -> Correction:
    suggestion = sentence[: fix.start] + fix.replacement + sentence[fix.end :]
    return Correction(
        original=sentence,
        suggestion=suggestion,
        reason=fix.reason,
        rule=fix.rule,
        span=sentence[fix.start : fix.end],
    )


_RULES = (articles, *RULES)  # a/an first: fixes at the same place keep this order
RULE_IDS = (
    "article_a_an",
    "repeated_word",
    "subject_verb_agreement",
    "could_of",
    "double_comparative",
    "less_fewer",
    "much_many",
    "past_participle",
    "base_form_after_do",
    "alot",
    "irregardless",
    "their_there",
)


def check_grammar(sentence: str) -> list[Correction]:
    """Rule-based corrections for one transcribed sentence, in the order they occur.

    Each correction fixes one thing, so a sentence with two mistakes gives two
    corrections, each suggesting the sentence with its own fix applied.
    """
    sentence = sentence.strip()
    tokens = tokenize(sentence)
    fixes = [fix for rule in _RULES for fix in rule(sentence, tokens)]
    fixes.sort(key=lambda f: (f.start, f.end))
    return [_apply(sentence, fix) for fix in fixes]


def changed_range(original: str, suggestion: str) -> Optional[tuple[int, int]]:
    """[first, last) word positions of `original` that `suggestion` changes; None if no word changes.

    A pure insertion ("collide you" -> "collide, so you") covers the words either side.
    """
    a, b = original.split(), suggestion.split()
    key = lambda w: re.sub(r"[^\w']", "", w.lower().replace("’", "'"))  # noqa: E731 - words, not punctuation
    matcher = difflib.SequenceMatcher(a=[key(w) for w in a], b=[key(w) for w in b], autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not changes:
        return None
    first, last = changes[0][1], changes[-1][2]
    if first == last:
        first, last = max(first - 1, 0), min(last + 1, len(a))
    return first, last

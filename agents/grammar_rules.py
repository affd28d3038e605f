"""The rule-based grammar checks: a sentence's words, and the narrow rules that read them.

Each rule takes the sentence and its tokens and yields `Fix`es: a character
span and what to put there. agents/grammar.py runs them (`check_grammar`);
the a/an rule, with its tables of how words sound, is in grammar_articles.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    text: str
    low: str  # lower case, curly apostrophes straightened
    start: int
    end: int
    joined: bool  # only spaces between this token and the one before


# A word: letters/digits, with inner apostrophes (don't) and hyphens (one-time).
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*(?:-[A-Za-z0-9]+)*(?:['’][A-Za-z]+)*")


def tokenize(sentence: str) -> list[Token]:
    tokens: list[Token] = []
    previous_end = 0
    for m in _WORD.finditer(sentence):
        between = sentence[previous_end : m.start()]
        joined = bool(tokens) and between.strip() == ""
        tokens.append(Token(m.group(), m.group().lower().replace("’", "'"), m.start(), m.end(), joined))
        previous_end = m.end()
    return tokens


def _clause_start(tokens: list[Token], i: int, openers: frozenset[str]) -> bool:
    """True when tokens[i] begins the sentence or a clause: after punctuation or an opener word."""
    return i == 0 or not tokens[i].joined or tokens[i - 1].low in openers


def match_case(template: str, word: str) -> str:
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


@dataclass(frozen=True)
class Fix:
    start: int  # character span of the sentence to replace
    end: int
    replacement: str
    reason: str
    rule: str


# ---------------------------------------------------------------- repeated words

# Only short function words count: doubled, they are a stumble in every reading
# ("the the", "to to", "I I think"). Others can double for a reason: "I know
# that that works", "she had had enough", "what it is is", "I told you you were
# right", "log in in the corner", "very very good", "Will will go".
_STUMBLE_WORDS = frozenset(
    """the a an to of for with and or but if as at from into about because i we they this these
    those which when our your their its would could should""".split()
)


def _repeated(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for first, second in zip(tokens, tokens[1:]):
        if not second.joined or first.low != second.low:
            continue
        if second.text != first.text and second.text[:1].isupper():
            continue  # "value Value": a label and a name, not a stumble
        if first.low not in _STUMBLE_WORDS:
            continue
        yield Fix(
            first.start,
            second.end,
            first.text,
            f'The word "{first.text}" is said twice; once is enough.',
            "repeated_word",
        )


# ---------------------------------------------------------------- subject-verb agreement

# Words after which a pronoun starts a new clause, so it is the subject of the
# verb that follows it. "and"/"or" are left out: "she and he are" is a
# compound subject and correct.
_OPENERS = frozenset(
    """but so because since if when whenever although though while unless until once whether
    then""".split()
)
# Before "he have", these make it a question or a modal ("could he have", "did she have").
_AUX_BEFORE = frozenset(
    """do does did don't doesn't didn't can could would should might must may will shall won't
    wouldn't couldn't shouldn't can't cannot to that and or nor let""".split()
)
_VERB_FIXES_3SG = {"don't": "doesn't", "have": "has", "are": "is", "aren't": "isn't"}
_VERB_FIXES_PLURAL = {
    "was": "were",
    "wasn't": "weren't",
    "doesn't": "don't",
    "is": "are",
    "isn't": "aren't",
    "has": "have",
}
_VERB_FIXES_I = {"is": "am", "are": "am", "has": "have", "doesn't": "don't"}


def _agreement(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (subject, verb) in enumerate(zip(tokens, tokens[1:])):
        if not verb.joined:
            continue
        before = tokens[i - 1].low if i > 0 and subject.joined else ""
        if before in ("and", "or", "nor"):
            continue  # "you and I are", "she and he don't": compound subjects
        s = subject.low
        fixes: dict[str, str] = {}
        if s in ("he", "she"):
            fixes = dict(_VERB_FIXES_3SG)
            if before in _AUX_BEFORE:
                fixes.pop("have")  # "could he have", "that she have" (subjunctive)
        elif s == "it" and _clause_start(tokens, i, _OPENERS):
            # Only at a clause start: in "the people who like it don't", "it" is an object.
            fixes = {k: v for k, v in _VERB_FIXES_3SG.items() if k != "have"}
        elif s in ("we", "they"):
            fixes = dict(_VERB_FIXES_PLURAL)
        elif s == "you" and _clause_start(tokens, i, _OPENERS):
            # Only at a clause start: in "what I told you was true", "you" is an object.
            fixes = {k: v for k, v in _VERB_FIXES_PLURAL.items() if k in ("was", "wasn't", "doesn't", "has")}
        elif subject.text == "I" and _clause_start(tokens, i, _OPENERS | {"think", "guess", "know"}):
            # Clause start also keeps out Roman numerals: "Phase I is", "World War I was".
            fixes = dict(_VERB_FIXES_I)
        wanted = fixes.get(verb.low)
        if wanted is None:
            continue
        yield Fix(
            verb.start,
            verb.end,
            match_case(verb.text, wanted),
            f'"{subject.text}" takes "{wanted}", not "{verb.text}": "{subject.text} {wanted}".',
            "subject_verb_agreement",
        )


# ---------------------------------------------------------------- could of

_MODALS_OF = frozenset("could would should must might couldn't wouldn't shouldn't mustn't mightn't".split())


def _could_of(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (modal, of) in enumerate(zip(tokens, tokens[1:])):
        if modal.low not in _MODALS_OF or of.low != "of" or not of.joined:
            continue
        after = tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 2].joined else None
        if after is not None and after.low in ("course", "necessity"):
            continue  # "I would of course check": a different "of"
        yield Fix(
            of.start,
            of.end,
            "have",
            f'"{modal.text} of" is a mishearing of "{modal.text} have" (or "{modal.text}\'ve").',
            "could_of",
        )


# ---------------------------------------------------------------- double comparatives

_COMPARATIVES = frozenset(
    """better worse bigger smaller faster slower easier harder larger higher lower cheaper
    quicker simpler stronger weaker greater longer shorter newer older safer cleaner clearer
    happier busier smarter""".split()
)
_SUPERLATIVES = frozenset(
    """best worst biggest smallest fastest slowest easiest hardest largest highest lowest
    cheapest quickest simplest strongest weakest greatest longest shortest newest oldest safest
    cleanest clearest happiest busiest smartest""".split()
)
# After "more better", these show the comparative is not describing a following
# noun ("more older people" can mean a greater number of older people).
_AFTER_COMPARATIVE = frozenset("than now today overall for because when if since so".split())


def _double_comparative(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (more, adj) in enumerate(zip(tokens, tokens[1:])):
        if not adj.joined:
            continue
        after = tokens[i + 2] if i + 2 < len(tokens) else None
        at_end = after is None or not after.joined  # sentence end or punctuation
        if more.low == "more" and adj.low in _COMPARATIVES:
            if not (at_end or after.low in _AFTER_COMPARATIVE):
                continue
        elif more.low == "most" and adj.low in _SUPERLATIVES:
            the_before = i > 0 and tokens[i - 1].low == "the" and more.joined
            if not (at_end or the_before):
                continue  # "most best practices say" is "most [best practices]"
        else:
            continue
        yield Fix(
            more.start,
            adj.end,
            match_case(more.text, adj.low),
            f'"{adj.text}" already compares; drop "{more.text}": "{adj.low}".',
            "double_comparative",
        )


# ---------------------------------------------------------------- less / fewer, much / many

_COUNT_NOUNS = frozenset(
    """people users customers clients employees candidates bugs errors mistakes questions
    problems issues calls tickets meetings steps lines features tests servers requests
    complaints things words items options changes files records emails messages cases
    projects tasks books cars""".split()
)


def _less_much(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (quantifier, noun) in enumerate(zip(tokens, tokens[1:])):
        if not noun.joined or noun.low not in _COUNT_NOUNS:
            continue
        before = tokens[i - 1].low if i > 0 and quantifier.joined else ""
        if quantifier.low == "less" and before != "or":  # "more or less" is an idiom
            wanted, rule = "fewer", "less_fewer"
            reason = f'"{noun.text}" can be counted: "fewer {noun.text}", not "less {noun.text}".'
        elif quantifier.low == "much" and before not in ("very", "so", "thanks", "you"):
            wanted, rule = "many", "much_many"
            reason = f'"{noun.text}" can be counted: "many {noun.text}", not "much {noun.text}".'
        else:
            continue
        yield Fix(quantifier.start, quantifier.end, match_case(quantifier.text, wanted), reason, rule)


# ---------------------------------------------------------------- verb forms

# Simple past used as a past participle: "I should have went".
_PARTICIPLES = {
    "went": "gone", "came": "come", "took": "taken", "gave": "given", "wrote": "written",
    "ate": "eaten", "began": "begun", "chose": "chosen", "knew": "known", "grew": "grown",
    "threw": "thrown", "drove": "driven", "ran": "run", "did": "done", "became": "become",
    "wore": "worn", "stole": "stolen", "froze": "frozen", "fell": "fallen", "shook": "shaken",
    "sang": "sung", "swam": "swum", "rode": "ridden", "blew": "blown", "flew": "flown",
    "drew": "drawn", "drank": "drunk", "forgave": "forgiven", "mistook": "mistaken",
    "undertook": "undertaken", "overtook": "overtaken",
}  # fmt: skip
_HAVE_FORMS = frozenset(
    "have has had haven't hasn't hadn't i've we've you've they've should've could've would've".split()
)

# A past form where "didn't" wants the base verb: "I didn't went".
_BASE_FORMS = {
    "went": "go", "came": "come", "took": "take", "gave": "give", "wrote": "write", "ate": "eat",
    "began": "begin", "knew": "know", "got": "get", "made": "make", "told": "tell", "said": "say",
    "thought": "think", "bought": "buy", "brought": "bring", "taught": "teach", "caught": "catch",
    "ran": "run", "drove": "drive", "chose": "choose", "grew": "grow", "threw": "throw",
    "understood": "understand", "wanted": "want", "needed": "need", "worked": "work",
    "tried": "try", "liked": "like", "asked": "ask", "started": "start", "decided": "decide",
    "finished": "finish", "helped": "help", "changed": "change", "happened": "happen",
}  # fmt: skip
_DO_NEGATIVES = frozenset("didn't doesn't don't".split())


def _verb_forms(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, (aux, verb) in enumerate(zip(tokens, tokens[1:])):
        if not verb.joined:
            continue
        if aux.low in _HAVE_FORMS and verb.low in _PARTICIPLES:
            wanted = _PARTICIPLES[verb.low]
            yield Fix(
                verb.start,
                verb.end,
                wanted,
                f'After "{aux.text}" use the past participle "{wanted}", not "{verb.text}".',
                "past_participle",
            )
            continue
        negative = aux.low in _DO_NEGATIVES or (
            aux.low == "not" and i > 0 and aux.joined and tokens[i - 1].low in ("did", "does", "do")
        )
        if negative and verb.low in _BASE_FORMS:
            wanted = _BASE_FORMS[verb.low]
            did = tokens[i - 1].text + " " + aux.text if aux.low == "not" else aux.text
            yield Fix(
                verb.start,
                verb.end,
                wanted,
                f'After "{did}" use the base form "{wanted}", not "{verb.text}".',
                "base_form_after_do",
            )


# ---------------------------------------------------------------- single words


def _word_rules(sentence: str, tokens: list[Token]) -> Iterator[Fix]:
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1].joined else None
        if token.low == "alot":
            yield Fix(token.start, token.end, match_case(token.text, "a lot"), '"A lot" is two words.', "alot")
        elif token.low == "irregardless":
            yield Fix(
                token.start,
                token.end,
                match_case(token.text, "regardless"),
                '"Irregardless" is nonstandard; say "regardless".',
                "irregardless",
            )
        elif token.low == "their" and nxt is not None and nxt.low in ("is", "are", "was", "were", "isn't", "aren't"):
            # "their" must be followed by a noun; before a verb it can only be "there".
            yield Fix(
                token.start,
                token.end,
                match_case(token.text, "there"),
                f'"{token.text} {nxt.text}" should be "there {nxt.text}" ("their" means belonging to them).',
                "their_there",
            )



RULES = (_repeated, _agreement, _could_of, _double_comparative, _less_much, _verb_forms, _word_rules)

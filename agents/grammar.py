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
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from earshot.agents.pace import SINGLE_FILLERS
from earshot.models.text import normalize_text, word_errors


@dataclass(frozen=True)
class Correction:
    original: str  # the whole sentence as transcribed
    suggestion: str  # the whole sentence with this one fix applied
    reason: str  # for the candidate, in plain words
    rule: str  # machine id: article_a_an, repeated_word, ... or "llm"
    source: str = "rules"  # "rules" | "llm"
    span: str = ""  # the offending words inside `original`


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    text: str
    low: str  # lower case, curly apostrophes straightened
    start: int
    end: int
    joined: bool  # only spaces between this token and the one before


# A word: letters/digits, with inner apostrophes (don't) and hyphens (one-time).
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*(?:-[A-Za-z0-9]+)*(?:['’][A-Za-z]+)*")


def _tokens(sentence: str) -> list[_Token]:
    tokens: list[_Token] = []
    previous_end = 0
    for m in _WORD.finditer(sentence):
        between = sentence[previous_end : m.start()]
        joined = bool(tokens) and between.strip() == ""
        tokens.append(_Token(m.group(), m.group().lower().replace("’", "'"), m.start(), m.end(), joined))
        previous_end = m.end()
    return tokens


def _clause_start(tokens: list[_Token], i: int, openers: frozenset[str]) -> bool:
    """True when tokens[i] begins the sentence or a clause: after punctuation or an opener word."""
    return i == 0 or not tokens[i].joined or tokens[i - 1].low in openers


def _match_case(template: str, word: str) -> str:
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


@dataclass(frozen=True)
class _Fix:
    start: int  # character span of the sentence to replace
    end: int
    replacement: str
    reason: str
    rule: str


def _apply(sentence: str, fix: _Fix) -> Correction:
    suggestion = sentence[: fix.start] + fix.replacement + sentence[fix.end :]
    return Correction(
        original=sentence,
        suggestion=suggestion,
        reason=fix.reason,
        rule=fix.rule,
        span=sentence[fix.start : fix.end],
    )


# ---------------------------------------------------------------- a / an

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


def _articles(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
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
        yield _Fix(
            article.start,
            article.end,
            _match_case(article.text, wanted),
            f'Use "{wanted}" before {spoken} sound: "{wanted} {nxt.text}".',
            "article_a_an",
        )


# ---------------------------------------------------------------- repeated words

# Only short function words count: doubled, they are a stumble in every reading
# ("the the", "to to", "I I think"). Others can double for a reason: "I know
# that that works", "she had had enough", "what it is is", "I told you you were
# right", "log in in the corner", "very very good", "Will will go".
_STUMBLE_WORDS = frozenset(
    """the a an to of for with and or but if as at from into about because i we they this these
    those which when our your their its would could should""".split()
)


def _repeated(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
    for first, second in zip(tokens, tokens[1:]):
        if not second.joined or first.low != second.low:
            continue
        if second.text != first.text and second.text[:1].isupper():
            continue  # "value Value": a label and a name, not a stumble
        if first.low not in _STUMBLE_WORDS:
            continue
        yield _Fix(
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


def _agreement(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
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
        yield _Fix(
            verb.start,
            verb.end,
            _match_case(verb.text, wanted),
            f'"{subject.text}" takes "{wanted}", not "{verb.text}": "{subject.text} {wanted}".',
            "subject_verb_agreement",
        )


# ---------------------------------------------------------------- could of

_MODALS_OF = frozenset("could would should must might couldn't wouldn't shouldn't mustn't mightn't".split())


def _could_of(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
    for i, (modal, of) in enumerate(zip(tokens, tokens[1:])):
        if modal.low not in _MODALS_OF or of.low != "of" or not of.joined:
            continue
        after = tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 2].joined else None
        if after is not None and after.low in ("course", "necessity"):
            continue  # "I would of course check": a different "of"
        yield _Fix(
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


def _double_comparative(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
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
        yield _Fix(
            more.start,
            adj.end,
            _match_case(more.text, adj.low),
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


def _less_much(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
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
        yield _Fix(quantifier.start, quantifier.end, _match_case(quantifier.text, wanted), reason, rule)


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


def _verb_forms(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
    for i, (aux, verb) in enumerate(zip(tokens, tokens[1:])):
        if not verb.joined:
            continue
        if aux.low in _HAVE_FORMS and verb.low in _PARTICIPLES:
            wanted = _PARTICIPLES[verb.low]
            yield _Fix(
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
            yield _Fix(
                verb.start,
                verb.end,
                wanted,
                f'After "{did}" use the base form "{wanted}", not "{verb.text}".',
                "base_form_after_do",
            )


# ---------------------------------------------------------------- single words


def _word_rules(sentence: str, tokens: list[_Token]) -> Iterator[_Fix]:
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1].joined else None
        if token.low == "alot":
            yield _Fix(token.start, token.end, _match_case(token.text, "a lot"), '"A lot" is two words.', "alot")
        elif token.low == "irregardless":
            yield _Fix(
                token.start,
                token.end,
                _match_case(token.text, "regardless"),
                '"Irregardless" is nonstandard; say "regardless".',
                "irregardless",
            )
        elif token.low == "their" and nxt is not None and nxt.low in ("is", "are", "was", "were", "isn't", "aren't"):
            # "their" must be followed by a noun; before a verb it can only be "there".
            yield _Fix(
                token.start,
                token.end,
                _match_case(token.text, "there"),
                f'"{token.text} {nxt.text}" should be "there {nxt.text}" ("their" means belonging to them).',
                "their_there",
            )


_RULES = (_articles, _repeated, _agreement, _could_of, _double_comparative, _less_much, _verb_forms, _word_rules)
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
    tokens = _tokens(sentence)
    fixes = [fix for rule in _RULES for fix in rule(sentence, tokens)]
    fixes.sort(key=lambda f: (f.start, f.end))
    return [_apply(sentence, fix) for fix in fixes]


# ---------------------------------------------------------------- LLM review

LLM_SEPARATOR = "||"
# Sentences per request: enough context for the model, short enough that a small
# max_tokens covers every correction it could make.
LLM_BATCH = 20
LLM_TOKENS_PER_SENTENCE = 60
# A "correction" that rewrites more than this share of the words is a rewrite:
# it changes what the candidate said, not how.
MAX_EDIT_SHARE = 0.4

LLM_SYSTEM_PROMPT = (
    "You check the grammar of a job candidate's spoken answers, transcribed by speech recognition. "
    "Fix only clear grammar mistakes: agreement, verb forms, articles, wrong word forms. "
    "Do not fix punctuation, capitalisation, style, word choice, filler words (um, uh, like, you know) "
    "or informal but correct speech, and never change the meaning.\n"
    "Output one line per sentence that has a mistake, exactly in this form:\n"
    f"NUMBER {LLM_SEPARATOR} CORRECTED SENTENCE {LLM_SEPARATOR} SHORT REASON\n"
    "NUMBER is the sentence's number from the list. Output nothing else. "
    "If no sentence has a mistake, output only: NONE"
)


@dataclass(frozen=True)
class _Message:
    """Same shape as models.llm.ChatMessage, for when that module is absent."""

    role: str
    content: str


def _message(role: str, content: str) -> Any:
    try:
        from earshot.models.llm import ChatMessage  # the backends' own type, when it exists
    except ImportError:
        return _Message(role, content)
    return ChatMessage(role=role, content=content)


async def llm_grammar_review(sentences: Sequence[str], llm: Any) -> list[Correction]:
    """Ask `llm` (anything with the models.llm `stream_chat` shape) for grammar fixes.

    Sentences go in batches of LLM_BATCH; every line of the reply is checked
    and dropped unless it names a sentence we sent, changes at least one word,
    and changes no more than MAX_EDIT_SHARE of them. Errors from the backend
    (models.llm.LlmError) propagate: the caller builds the report without LLM
    corrections then, and bounds the wait with its own timeout.
    """
    sentences = [s.strip() for s in sentences if s and s.strip()]
    corrections: list[Correction] = []
    seen: set[tuple[str, str]] = set()
    for offset in range(0, len(sentences), LLM_BATCH):
        batch = sentences[offset : offset + LLM_BATCH]
        numbered = "\n".join(f"{n}. {s}" for n, s in enumerate(batch, start=1))
        messages = [_message("system", LLM_SYSTEM_PROMPT), _message("user", numbered)]
        parts: list[str] = []
        async for delta in llm.stream_chat(
            messages, max_tokens=40 + LLM_TOKENS_PER_SENTENCE * len(batch), temperature=0.0
        ):
            parts.append(delta)
        for correction in parse_llm_corrections("".join(parts), batch):
            key = (correction.original, correction.suggestion)
            if key not in seen:
                seen.add(key)
                corrections.append(correction)
    return corrections


_LINE_PREFIX = re.compile(r"^\s*(?:[-*•]\s*)?")
_NUMBER = re.compile(r"^\(?\s*(?:sentence\s*)?#?(\d+)\s*[.):]?\s*$", re.IGNORECASE)


def parse_llm_corrections(reply: str, sentences: Sequence[str]) -> list[Correction]:
    """Corrections from a reply in the NUMBER || CORRECTED || WHY format; anything else is ignored."""
    by_text = {normalize_text(s): s for s in sentences}
    corrections: list[Correction] = []
    for line in reply.splitlines():
        fields = [f.strip().strip('"').strip() for f in _LINE_PREFIX.sub("", line).split(LLM_SEPARATOR)]
        if len(fields) != 3 or not fields[1]:
            continue
        ref, suggestion, why = fields
        number = _NUMBER.match(ref)
        if number:
            index = int(number.group(1)) - 1
            original = sentences[index] if 0 <= index < len(sentences) else None
        else:
            original = by_text.get(normalize_text(ref))  # some models echo the sentence instead
        if original is None:
            continue
        edits, length = word_errors(original, suggestion)
        if edits == 0 or edits > MAX_EDIT_SHARE * max(length, 1):
            continue  # only punctuation or case changed, or a rewrite rather than a fix
        corrections.append(
            Correction(
                original=original,
                suggestion=suggestion,
                reason=why or "Suggested by the language model.",
                rule="llm",
                source="llm",
                span=_changed_span(original, suggestion),
            )
        )
    return corrections


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


def _changed_span(original: str, suggestion: str) -> str:
    found = changed_range(original, suggestion)
    return " ".join(original.split()[found[0] : found[1]]) if found else ""

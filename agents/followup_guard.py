"""Guardrails for the interviewer's follow-up: is what the LLM wrote fit to speak?

The default LLM, SmolLM2-135M, often gets a follow-up wrong: it answers the
question itself, asks three questions, writes markdown, or asks something
generic. So everything it writes passes `check_follow_up` before it is
spoken, and the caller falls back to the bank's stock follow-up when it does
not.

`FollowUpStream` applies the same rules sentence by sentence while the reply
streams in, so the first sentence can go to the voice before the LLM is done,
and a bad sentence is never spoken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from earshot.agents.sentences import SentenceStream, split_sentences

FOLLOW_UP_WORDS = (4, 40)
LEAD_IN_WORDS = 28  # the one statement allowed before the question
STREAM_WORDS = 60  # no sentence end after this many words: rambling, stop it


@dataclass(frozen=True)
class GuardVerdict:
    ok: bool
    # "" when ok; else one of: empty, markup, role_confusion, multiple_questions,
    # no_question, too_short, too_long, repeats_question, not_about_answer
    reason: str


OK = GuardVerdict(True, "")

# Spoken by a TTS voice: code, markdown, links and emoji would be read out or mangled.
_MARKUP = re.compile(
    r"```|`|\*|_|#|\\|[{}\[\]<>|=~^]|https?://|www\.|\.(com|org|io|net)\b"
    r"|[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]",
    re.IGNORECASE,
)

# The model speaking as someone other than the interviewer: as the candidate
# (answering its own question), as an AI, or about "the candidate" in the
# third person. "I'm curious", "I'd like to hear" and "I noticed" stay allowed:
# interviewers say those.
_ROLE_CONFUSION = re.compile(
    r"\bas an? (ai|a\.i\.|artificial intelligence|language model|assistant|chatbot)\b"
    r"|\b(i am|i'm) (a|an|the) (candidate|interviewee|applicant|ai|language model|assistant)\b"
    r"|\b(i am|i'm) (a|an) ([a-z]+ )?(agent|engineer|scientist|manager|consultant|representative|developer"
    r"|analyst|lead|professional|expert|specialist)\b"
    r"|\bi specialize\b"
    r"|\bmy (answer|response)\b"
    r"|\b(candidate|interviewee|applicant|assistant|user|answer|response|role|you asked)\s*:"
    r"|\bthe (candidate|interviewee|applicant)\b"
    r"|\bin my (experience|previous|last|current|role|job|team|work)\b"
    r"|\bmy (team|company|manager|colleagues?|previous|current|last) "
    r"|\bi(?: have|'ve| had|'d) (worked|used|built|led|managed|been|developed|implemented|handled|designed|created|written|done|learned)\b"
    r"|\bi (used|worked|built|led|managed|developed|implemented|handled|designed|created|wrote|did|learned|was responsible)\b"
    r"|\b(thank you for|thanks for) (the|this|that|your) question\b"
    r"|\b(great|good|interesting) question\b",
    re.IGNORECASE,
)
# "Interviewer:" is a label the cleaner strips from the start; anywhere else it
# means the model is writing a transcript of both sides.
_INTERVIEWER_LABEL = re.compile(r"\binterviewer\s*:", re.IGNORECASE)

# Words that carry no reference to what the candidate said: English function
# words, and the interview vocabulary every generic follow-up uses ("can you
# tell me more about your experience with that example?").
_STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each even ever every few for from further get got had hadn't has hasn't have haven't having he
    her here hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself
    just let let's like made make many may me might more most much must my myself no nor not now of off on
    once one only or other others our ours ourselves out over own really same say said she should shouldn't
    so some such than that that's the their theirs them themselves then there there's these they they'd
    they're this those though through to too under until up upon us use used very was wasn't way we we'd
    we're we've well were weren't what what's when where which while who whom whose why will with within
    without won't would wouldn't yes yet you you'd you'll you're you've your yours yourself yourselves
    able actually areas case decide describe detail details elaborate else example examples
    experience explain go going give happen happened how's instance kind know lot mean
    mention mentioned more part particular point share situation something specific specifically
    tell thing things think thought time times tried try trying using doing walk want work worked working
    """.split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _stem(word: str) -> str:
    """Crude suffix stripping, enough to match "caches" to "cache" and "handling" to "handled"."""
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word[-2] in "su":  # "process", "status": not plurals
                break
            word = word[: len(word) - len(suffix)] + replacement
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def content_stems(text: str) -> set[str]:
    """Stems of the words that carry meaning: no stopwords, no one- or two-letter words."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    return {_stem(w) for w in words if w not in _STOPWORDS and len(w) > 2 and not w.isdigit()}


def _words(text: str) -> int:
    return len(text.split())


def _sentence_problem(text: str) -> str:
    """The checks that apply to any sentence, lead-in or question."""
    text = text.replace("’", "'")
    if _MARKUP.search(text):
        return "markup"
    if _ROLE_CONFUSION.search(text) or _INTERVIEWER_LABEL.search(text):
        return "role_confusion"
    return ""


def check_follow_up(text: str, question: str, answer: str) -> GuardVerdict:
    """Is `text` a follow-up fit to speak: at most one lead-in statement, then one question?

    Expects text as `FollowUpStream` cleans it (labels, quotes and markdown gone).
    """
    text = text.strip()
    if not text:
        return GuardVerdict(False, "empty")
    problem = _sentence_problem(text)
    if problem:
        return GuardVerdict(False, problem)
    if text.count("?") > 1:
        return GuardVerdict(False, "multiple_questions")
    if not text.endswith("?"):
        return GuardVerdict(False, "no_question")
    words = _words(text)
    if words < FOLLOW_UP_WORDS[0]:
        return GuardVerdict(False, "too_short")
    if words > FOLLOW_UP_WORDS[1]:
        return GuardVerdict(False, "too_long")
    *lead_ins, asked_now = split_sentences(text)
    if len(lead_ins) > 1:
        return GuardVerdict(False, "too_long")  # one lead-in at most, then the question
    for lead_in in lead_ins:
        problem = _lead_in_problem(lead_in, question, answer)
        if problem:
            return GuardVerdict(False, problem)
    # The question sentence (a lead-in may come first) in mostly the bank
    # question's own words: a rephrasing of it, not a follow-up. One shared word
    # is not a rephrasing: "How do you measure that?" after a lead-in is fine.
    said = content_stems(asked_now)
    if len(said) >= 2 and len(said & content_stems(question)) / len(said) >= 0.75:
        return GuardVerdict(False, "repeats_question")
    if not _refers_to_answer(text, question, answer) or _misquotes(text, answer):
        return GuardVerdict(False, "not_about_answer")
    return OK


def _lead_in_problem(sentence: str, question: str, answer: str) -> str:
    """The statement before the question should restate something the candidate said, briefly.

    First person is refused here though allowed in the question ("I'm curious,
    why ...?"): in a small model's lead-in, "I think", "I'm glad" and "I'm not
    sure" are the model drifting into opinions or into the candidate's part.
    """
    problem = _sentence_problem(sentence)
    if problem:
        return problem
    if _FIRST_PERSON.search(sentence.replace("’", "'")) or _YOU_ARE_RIGHT.search(sentence):
        return "role_confusion"
    if _words(sentence) > LEAD_IN_WORDS:
        return "too_long"
    if not _refers_to_answer(sentence, question, answer) or _misquotes(sentence, answer):
        return "not_about_answer"  # "What a great example." is filler the voice should not say
    return ""


_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|me|my|mine|myself)\b", re.IGNORECASE)
# A reply to being corrected: the model has lost track of who said what.
_YOU_ARE_RIGHT = re.compile(r"\byou(?:'re| are) (?:right|correct)\b", re.IGNORECASE)
_QUOTED = re.compile(r'["“]([^"”]+)["”]')


def _misquotes(text: str, answer: str) -> bool:
    """Does `text` put words in quotes that the candidate did not say?

    Small models invent a catchy phrase ("draining the pond") and ask what the
    candidate meant by it; a misquote is worse than no follow-up.
    """
    heard = content_stems(answer)
    return any(content_stems(quoted) - heard for quoted in _QUOTED.findall(text))


def _refers_to_answer(text: str, question: str, answer: str) -> bool:
    """Does `text` pick up a word the candidate said that the question did not already say?

    An answer that only echoes the question's words is judged on those.
    """
    heard = content_stems(answer)
    specific = heard - content_stems(question) or heard
    return bool(content_stems(text) & specific)


# Labels and preambles small models put before the question itself; removed
# from the start of a reply, repeatedly ("Sure! Follow-up question: ...").
_PREFIX = re.compile(
    r"^\s*(?:"
    r"(?:sure|okay|ok|certainly|of course|alright)\s*[,.!:]"
    r"|here(?:'s| is) (?:a|an|one|my|the) [\w\s-]{0,30}?follow[- ]?up(?: question)?[\w\s]{0,20}?\s*[:.-]"
    r"|(?:interviewer|follow[- ]?up(?: question)?(?: about the answer)?|question|q)\s*:"
    r")\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’«»"


def _clean_sentence(text: str, first: bool) -> str:
    """Plain spoken text: markdown emphasis, list marks and wrapping quotes removed, spaces collapsed."""
    text = text.replace("*", "")  # emphasis and list marks; never spoken
    text = re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", "", text)  # _emphasis_, not snake_case
    text = re.sub(r"^\s*(?:[-•]|\d+[.)])\s+", "", text)  # a list item's mark
    if first:
        while (label := _PREFIX.match(text)) and label.end() > 0:
            text = text[label.end():]
    text = " ".join(text.split())
    text = text.strip(_QUOTES + " ")
    return text


# --- streaming ---------------------------------------------------------------------


class FollowUpStream:
    """Incremental: feed LLM text deltas, get back sentences that are safe to speak as soon as each completes.

    At most one short lead-in statement that restates something from the
    answer ("You mentioned the reranker."), then the question. A lead-in is released as soon as it is
    complete and passes the sentence checks, so the voice can start; if the
    question after it then fails, the caller follows the lead-in with the
    bank's stock follow-up, which still reads naturally. A first sentence
    that fails is never spoken and ends the stream.

    `done` turns True when nothing more will be accepted (the question is out,
    or the reply failed): the caller should stop the LLM then.
    """

    def __init__(self, question: str, answer: str) -> None:
        self._question = question
        self._answer = answer
        # "?" ends the question at once: nothing after it is used, and the voice can start.
        self._stream = SentenceStream(ends_at_once="?")
        self._sentences: list[str] = []
        self._verdict: GuardVerdict | None = None  # set once decided
        self.done = False
        self.text = ""

    def feed(self, delta: str) -> list[str]:
        if self.done:
            return []
        ready: list[str] = []
        for sentence in self._stream.feed(delta):
            accepted = self._take(sentence)
            if accepted:
                ready.append(accepted)
            if self.done:
                return ready
        if _words(self._stream.pending) > STREAM_WORDS:
            self._fail("too_long")
        return ready

    def finish(self) -> GuardVerdict:
        """At the end of the stream (or once `done`): was a good follow-up produced?"""
        if self._verdict is None:
            for rest in self._stream.flush():
                self._take(rest)  # a last statement, complete or not, can still fail the reply
            if self._verdict is None:
                self._fail("no_question" if self._sentences else "empty")
        assert self._verdict is not None
        return self._verdict

    def _take(self, sentence: str) -> str:
        """Judge one complete sentence; return it cleaned if it may be spoken now."""
        cleaned = _clean_sentence(sentence, first=not self._sentences)
        if not cleaned:
            return ""  # a label or stray quote on its own
        if cleaned.endswith("?"):
            candidate = " ".join([*self._sentences, cleaned])
            verdict = check_follow_up(candidate, self._question, self._answer)
            if not verdict.ok:
                self._fail(verdict.reason)
                return ""
            self._accept(cleaned)
            self._verdict = OK
            self.done = True
            return cleaned
        if self._sentences:  # a second statement before any question
            self._fail("too_long")
            return ""
        problem = _lead_in_problem(cleaned, self._question, self._answer)
        if problem:
            self._fail(problem)
            return ""
        self._accept(cleaned)
        return cleaned

    def _accept(self, sentence: str) -> None:
        self._sentences.append(sentence)
        self.text = " ".join(self._sentences)

    def _fail(self, reason: str) -> None:
        self._verdict = GuardVerdict(False, reason)
        self.done = True

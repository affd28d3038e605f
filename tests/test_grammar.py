"""Rule-based grammar checks and the LLM review's parsing, on transcribed speech."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import AsyncIterator

import pytest
from conftest import CORPUS

from earshot.agents.grammar import RULE_IDS, check_grammar
from earshot.agents.grammar_llm import llm_grammar_review, parse_llm_corrections
from earshot.agents.question_bank import load_question_bank


def fixes(sentence: str) -> list[tuple[str, str]]:
    return [(c.rule, c.suggestion) for c in check_grammar(sentence)]


# (sentence, rule, suggestion): each must give exactly this one correction.
WRONG = [
    # a / an, by sound not letter
    ("It took me a hour to fix.", "article_a_an", "It took me an hour to fix."),
    ("That was a honest mistake.", "article_a_an", "That was an honest mistake."),
    ("We built a API for it.", "article_a_an", "We built an API for it."),
    ("A example would be our login page.", "article_a_an", "An example would be our login page."),
    ("It had a 8-hour limit.", "article_a_an", "It had an 8-hour limit."),
    ("Every an user gets a token.", "article_a_an", "Every a user gets a token."),
    ("It is an one-time fee.", "article_a_an", "It is a one-time fee."),
    ("We opened an university office.", "article_a_an", "We opened a university office."),
    ("It was an European client.", "article_a_an", "It was a European client."),
    ("We sent an URL to the customer.", "article_a_an", "We sent a URL to the customer."),
    ("That is an big problem.", "article_a_an", "That is a big problem."),
    # repeated words
    ("I went to the the office.", "repeated_word", "I went to the office."),
    ("I I think it works.", "repeated_word", "I think it works."),
    ("We wanted to to ship it.", "repeated_word", "We wanted to ship it."),
    # subject-verb agreement
    ("He don't like meetings.", "subject_verb_agreement", "He doesn't like meetings."),
    ("She have a lot of experience.", "subject_verb_agreement", "She has a lot of experience."),
    ("It don't matter much.", "subject_verb_agreement", "It doesn't matter much."),
    ("They was very happy with it.", "subject_verb_agreement", "They were very happy with it."),
    ("We was late on that release.", "subject_verb_agreement", "We were late on that release."),
    ("You was right about that.", "subject_verb_agreement", "You were right about that."),
    ("I is the one who wrote it.", "subject_verb_agreement", "I am the one who wrote it."),
    ("They doesn't need access.", "subject_verb_agreement", "They don't need access."),
    # could of
    ("We could of shipped earlier.", "could_of", "We could have shipped earlier."),
    ("I should of asked.", "could_of", "I should have asked."),
    ("They wouldn't of known.", "could_of", "They wouldn't have known."),
    # double comparatives
    ("The new version is more better.", "double_comparative", "The new version is better."),
    ("It runs more faster than before.", "double_comparative", "It runs faster than before."),
    ("That was the most easiest part.", "double_comparative", "That was the easiest part."),
    # less / fewer, much / many
    ("We had less bugs after that.", "less_fewer", "We had fewer bugs after that."),
    ("Less people called in.", "less_fewer", "Fewer people called in."),
    ("There were too much errors.", "much_many", "There were too many errors."),
    # verb forms
    ("I should have went to the meeting.", "past_participle", "I should have gone to the meeting."),
    ("We had wrote most of it already.", "past_participle", "We had written most of it already."),
    ("It didn't went well.", "base_form_after_do", "It didn't go well."),
    ("He did not knew the answer.", "base_form_after_do", "He did not know the answer."),
    # single words
    ("We had alot of tickets.", "alot", "We had a lot of tickets."),
    ("Irregardless, we shipped it.", "irregardless", "Regardless, we shipped it."),
    ("Their is a better way.", "their_there", "There is a better way."),
    ("I think their are two options.", "their_there", "I think there are two options."),
]


@pytest.mark.parametrize("sentence,rule,suggestion", WRONG)
def test_each_rule_fixes_what_it_is_for(sentence, rule, suggestion):
    assert fixes(sentence) == [(rule, suggestion)]


def test_every_rule_has_a_positive_case():
    assert {rule for _, rule, _ in WRONG} == set(RULE_IDS)


# Correct sentences that sit close to a rule: each would be a false correction.
RIGHT = [
    # a / an
    "It was a one-time fee for a user.",
    "A unique ID goes with a European customer and a university.",
    "We spent an hour on an honest review of an MBA program.",
    "We had a URL and a UI for a USB device.",
    "It was an 8-hour shift and an 11-hour flight, a 100-page spec.",
    "Plan A is fine and option A is cheaper.",
    "A and B are both valid.",
    "It is a, um, a way to cache it.",
    "That is a historic day, or an historic day if you prefer.",
    "We bought an SQL license and a SQL book.",
    "An Uber driver took a usual route.",
    "An Eulerian path visits every edge.",
    "We raised an RLock error in an sdist build.",
    # repeated words
    "I know that that works.",
    "She had had enough of it.",
    "What it is is a cache.",
    "I told you you were right.",
    "It was very very good.",
    "You log in in the top corner.",
    "I gave her her notes.",
    "Um um, let me think.",
    "We said no, no, and no.",
    # agreement
    "The people who like it don't complain.",
    "What I told you was true.",
    "You and I are on the same team.",
    "She and he don't agree.",
    "If he were here he would say so.",
    "Could he have done it faster?",
    "Does she have access?",
    "World War I was long.",
    "Phase I is done.",
    "The thing I gave you doesn't work.",
    "The code they wrote was clean.",
    # could of
    "I would of course check first.",
    # comparatives
    "We need more older servers in the pool.",
    "Most best practices say otherwise.",
    "I will say more later.",
    "We need more faster-growing accounts.",
    # less / much
    "More or less people agree.",
    "It was less user-friendly.",
    "Thank you very much people.",
    "We had less time and less money.",
    # verb forms
    "They didn't used to test it.",
    "I have saw blades at home.",
    "We didn't found a company.",
    # their / there
    "Their issue was the login page.",
    "There is their office.",
    # fillers are not grammar
    "Um, uh, I think, you know, it was, like, fine.",
]


@pytest.mark.parametrize("sentence", RIGHT)
def test_correct_sentences_near_a_rule_are_left_alone(sentence):
    assert check_grammar(sentence) == []


def corpus_sentences() -> list[str]:
    with open(CORPUS / "manifest.tsv", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f, delimiter="\t")]
    return [s for t in texts for s in re.split(r"(?<=[.;])\s+", t) if s]


def test_no_corrections_on_reference_texts_and_the_question_bank():
    # The corpus references (book prose) and every bank question, key point and
    # follow-up are correct English: any correction here is a false positive.
    sentences = corpus_sentences()
    assert len(sentences) >= 30
    bank = load_question_bank()
    sentences += [s for q in bank.all_questions for s in (q.text, *q.key_points, *q.follow_ups)]
    flagged = [(s, c.rule) for s in sentences for c in check_grammar(s)]
    assert flagged == []


def test_a_correction_carries_the_whole_sentence_and_the_span():
    (c,) = check_grammar("So I think he don't really care about tests.")
    assert c.original == "So I think he don't really care about tests."
    assert c.span == "don't"
    assert c.suggestion == "So I think he doesn't really care about tests."
    assert c.source == "rules" and c.rule == "subject_verb_agreement"
    assert "doesn't" in c.reason


def test_two_mistakes_give_two_corrections_each_with_its_own_fix():
    found = check_grammar("He don't have a API.")
    assert [(c.rule, c.suggestion) for c in found] == [
        ("subject_verb_agreement", "He doesn't have a API."),
        ("article_a_an", "He don't have an API."),
    ]


def test_curly_apostrophes_and_capitals_are_kept():
    assert fixes("He don’t know. The the end.") == [
        ("subject_verb_agreement", "He doesn't know. The the end."),
        ("repeated_word", "He don’t know. The end."),
    ]


# ---------------------------------------------------------------- LLM review


@dataclass(frozen=True)
class FakeLlm:
    """Streams a canned reply in small pieces, and keeps what it was asked."""

    reply: str
    asked: list

    async def stream_chat(self, messages, *, max_tokens: int, temperature: float = 0.3, stop=()) -> AsyncIterator[str]:
        self.asked.append((list(messages), max_tokens))
        for i in range(0, len(self.reply), 7):
            yield self.reply[i : i + 7]


SENTENCES = [
    "Me and him was working on the backend.",
    "We deployed it on Friday.",
    "The tests was flaky.",
    "I like the team.",
]


async def test_llm_review_keeps_real_fixes_and_drops_the_rest():
    reply = "\n".join(
        [
            "1 || He and I were working on the backend. || Subject pronouns and plural verb.",
            "2 || We deployed it on Friday. || No change.",  # same as the original
            "3. || The tests were flaky. || Plural subject takes were.",
            "4 || I absolutely love working with this wonderful group of people. || Better style.",  # a rewrite
            "7 || Something else entirely. || Out of range.",
            "This line has no separators.",
            "NONE",
        ]
    )
    llm = FakeLlm(reply, [])
    found = await llm_grammar_review(SENTENCES, llm)
    assert [(c.original, c.suggestion) for c in found] == [
        ("Me and him was working on the backend.", "He and I were working on the backend."),
        ("The tests was flaky.", "The tests were flaky."),
    ]
    assert all(c.source == "llm" and c.rule == "llm" for c in found)
    assert found[1].reason == "Plural subject takes were."
    assert found[1].span == "was"
    messages, max_tokens = llm.asked[0]
    assert [m.role for m in messages] == ["system", "user"]
    assert "1. Me and him was working on the backend." in messages[1].content
    assert "||" in messages[0].content and max_tokens > 0


async def test_llm_review_batches_long_input_and_drops_repeats():
    sentences = [f"Sentence number {i} are here." for i in range(20)] + ["We shipped it to production."] * 5
    llm = FakeLlm("1 || Sentence number 0 is here. || Agreement.\n1 || Sentence number 0 is here. || Again.", [])
    found = await llm_grammar_review(sentences, llm)
    assert len(llm.asked) == 2  # 20 + 5
    assert "1. We shipped it to production." in llm.asked[1][0][1].content
    # In the second batch, sentence 1 is "We shipped it...": that suggestion would rewrite it.
    assert [c.suggestion for c in found] == ["Sentence number 0 is here."]


def test_parse_accepts_an_echoed_sentence_and_punctuation_only_changes_are_dropped():
    reply = (
        '- "The tests was flaky." || "The tests were flaky." || agreement\n'
        "1 || Me and him was working on the backend! || punctuation only\n"
    )
    found = parse_llm_corrections(reply, SENTENCES)
    assert [(c.original, c.suggestion) for c in found] == [("The tests was flaky.", "The tests were flaky.")]


async def test_llm_errors_reach_the_caller():
    class Broken:
        async def stream_chat(self, messages, **kwargs):
            raise RuntimeError("backend down")
            yield ""  # pragma: no cover - makes this an async generator

    with pytest.raises(RuntimeError, match="backend down"):
        await llm_grammar_review(["He go there."], Broken())


async def test_no_sentences_no_request():
    llm = FakeLlm("", [])
    assert await llm_grammar_review(["", "  "], llm) == []
    assert llm.asked == []

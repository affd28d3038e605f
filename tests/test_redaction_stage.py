"""The live path's redaction (server/redaction_stage.py) with the real redactor: finals, their timed words, partials."""

from __future__ import annotations

import asyncio

import pytest

from earshot.models.asr import Word
from earshot.models.redaction import Redactor
from earshot.models.redaction.kinds import parse_kinds
from earshot.server.redaction_stage import RedactionOptions, TranscriptRedaction, apply_spans


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor.load()


def timed(text: str) -> list[Word]:
    return [Word(word, round(i * 0.3, 2), round(i * 0.3 + 0.25, 2), 0.9) for i, word in enumerate(text.split())]


def test_a_final_loses_the_number_in_its_text_and_its_words(redactor):
    text = "You can reach me at four one five, five five five, zero one three four. Thanks."
    stage = TranscriptRedaction(RedactionOptions(redactor, parse_kinds("all")))
    final = asyncio.run(stage.final(text, timed(text)))
    assert final.text == "You can reach me at [PHONE]. Thanks."
    assert final.raw_text is None  # not an overlay that may show it
    texts = [w.text for w in final.words]
    assert texts == ["You", "can", "reach", "me", "at", "[PHONE]", "Thanks."]
    tag = final.words[5]
    assert (tag.start, tag.end) == (1.5, 4.45)  # from the first number word to the last
    assert final.redact_s > 0


def test_the_overlay_may_get_the_raw_text_but_only_when_something_was_redacted(redactor):
    stage = TranscriptRedaction(RedactionOptions(redactor, parse_kinds("all"), show_raw=True))
    said = "My email is mark dot rivera at gmail dot com"
    final = asyncio.run(stage.final(said, timed(said)))
    assert final.text == "My email is [EMAIL]" and final.raw_text == said
    clean = asyncio.run(stage.final("Four layers of review.", timed("Four layers of review.")))
    assert clean.text == "Four layers of review." and clean.raw_text is None


def test_kinds_not_asked_for_stay(redactor):
    stage = TranscriptRedaction(RedactionOptions(redactor, parse_kinds("email")))
    said = "Call 415-555-0134 or write to ann@example.org"
    assert asyncio.run(stage.final(said, timed(said))).text == "Call 415-555-0134 or write to [EMAIL]"


def test_no_kinds_pass_everything_through_without_the_redactor():
    stage = TranscriptRedaction(RedactionOptions(redactor=None, kinds=frozenset()))  # type: ignore[arg-type]
    final = asyncio.run(stage.final("415-555-0134", timed("415-555-0134")))
    assert final.text == "415-555-0134" and final.redact_s == 0.0
    assert asyncio.run(stage.partial("415", "555")) == ("415", "555")


def test_a_partial_split_across_committed_and_tentative_words_keeps_one_tag(redactor):
    stage = TranscriptRedaction(RedactionOptions(redactor, parse_kinds("all")))
    assert asyncio.run(stage.partial("You can reach me at 415-555", "-0134 thank you")) == (
        "You can reach me at [PHONE]", "thank you"
    )
    assert asyncio.run(stage.partial("", "my card is 4111 1111 1111 1111")) == ("", "my card is [CARD]")


def test_apply_spans_replaces_in_order_and_drops_an_empty_kind():
    assert apply_spans("ab 123 cd 456", [("phone", 10, 13), ("card", 3, 6)]) == "ab [CARD] cd [PHONE]"
    assert apply_spans("-0134 thanks", [("", 0, 5)]) == " thanks"

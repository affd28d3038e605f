"""The one sentence splitter: whole texts, and the same rule on text that streams in."""

from __future__ import annotations

import random

import pytest

from earshot.agents.sentences import SentenceStream, split_sentences

TEXT = (
    "Great answer. Could you say more, e.g. about the launch at 9 a.m. on day one? "
    'She said "done." Well... I see.\nNext: tell me about v1.5 of the API! And Mr. Lee\'s role?! '
    "Why?? Because. trailing words"
)


def pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, 12)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def streamed(text: str, rng: random.Random, ends_at_once: str = "") -> list[str]:
    stream, out = SentenceStream(ends_at_once), []
    for piece in pieces(text, rng):
        out += stream.feed(piece)
    return out + stream.flush()


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
        ("It costs 3.5 dollars. Dr. Smith agrees.", ["It costs 3.5 dollars.", "Dr. Smith agrees."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("Really?! Yes. so it goes", ["Really?!", "Yes.", "so it goes"]),
        ("  ", []),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_the_stream_agrees_with_split_sentences_however_the_text_is_cut():
    rng = random.Random(7)
    for _ in range(50):
        assert streamed(TEXT, rng) == split_sentences(TEXT)


def test_a_sentence_comes_out_once_the_space_after_its_end_arrives():
    stream = SentenceStream()
    assert stream.feed("It costs 3.") == []  # may become "3.5"
    assert stream.feed("5 dollars.") == []
    assert stream.feed(" Dr.") == ["It costs 3.5 dollars."]
    assert stream.feed(" Smith agr") == []  # "Dr." ends nothing
    assert stream.pending == "Dr. Smith agr"
    assert stream.flush() == ["Dr. Smith agr"]
    assert stream.flush() == []


def test_ends_at_once_needs_nothing_after_it_and_takes_the_first_of_a_run():
    stream = SentenceStream(ends_at_once="?")
    assert stream.feed("Why the median") == []
    assert stream.feed("?") == ["Why the median?"]
    assert stream.feed("! Or. Why not?") == ["!", "Or.", "Why not?"]
    rng = random.Random(3)
    once = streamed(TEXT, random.Random(0), ends_at_once="?")
    assert "Could you say more, e.g. about the launch at 9 a.m." in once  # "e.g." ends nothing
    assert "Why?" in once and "?" in once  # "Why??" ends at its first "?"
    for _ in range(50):
        assert streamed(TEXT, rng, ends_at_once="?") == once

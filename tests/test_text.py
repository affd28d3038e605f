from earshot.loadtest.wer import wer
from earshot.models.text import normalize_text, number_to_words, word_errors


def test_normalize_lowercases_and_strips_punctuation():
    assert normalize_text('Printing, in the "only" sense;') == "printing in the only sense"


def test_normalize_spells_years_and_numbers_as_references_write_them():
    assert normalize_text("about 1455") == "about fourteen fifty five"
    assert normalize_text("the 15th century") == "the fifteen century"
    assert normalize_text("42-line Bible") == "forty two line bible"
    assert number_to_words(1203) == "one thousand two hundred three"


def test_normalize_expands_abbreviations_and_hyphens():
    assert normalize_text("Mr. John Dashwood, ill-disposed") == "mister john dashwood ill disposed"
    assert normalize_text("i.e. the letter") == "ie the letter"


def test_normalize_keeps_apostrophes_inside_words_only():
    assert normalize_text("'Don't' stop") == "don't stop"


def test_word_errors_counts_substitutions_insertions_deletions():
    assert word_errors("a b c d", "a x c d e") == (2, 4)
    assert word_errors("a b c", "") == (3, 3)
    assert wer(["He was not an ill disposed young man"], ["he was not an ill-disposed young man."]) == 0.0


def test_published_wer_counts_bracketed_reference_words_as_spoken():
    reference = "but the first Bible actually dated (which also was printed at Mainz by Peter Schoeffer in the year 1462)"
    hypothesis = "But the first Bible actually dated, which also was printed at Mainz by Peter Schoeffer in the year 1462."
    assert wer([reference], [hypothesis]) == 0.0
    assert wer(["the year 1462"], ["the year fourteen sixty two"]) == 0.0  # numbers compare as published results compare them

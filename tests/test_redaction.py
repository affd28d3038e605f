"""PII redaction (models/redaction/): every kind spoken and written, Luhn, clean lines, tags and offsets,
threads, no network, and the labelled set's quality (bench/redaction_bench.py measures the same, and the time)."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.redaction_bench import FORMS, LABELLED, load_labelled, score
from earshot.models.redaction import PiiSpan, Redaction, Redactor
from earshot.models.redaction.kinds import KINDS, TAGS
from earshot.models.redaction.redactor import _Finding, merge
from earshot.models.redaction.spoken import normalise
from tests.conftest import REPO, fresh_process_json

EVERYTHING = frozenset(KINDS)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor.load()


# (line, kind, what must be gone from it)
SPOKEN = [
    ("my card number is four one one one one one one one one one one one one one one one", "card", "four one one one"),
    ("you can reach me on four one five, five five five, oh one three two", "phone", "four one five"),
    ("my email is mark dot rivera at gmail dot com", "email", "rivera"),
    ("my social security number is five three six, two two, eight one four seven", "id", "five three six"),
    ("national insurance number A B one two three four five six C", "id", "one two three"),
    ("my IBAN is G B eight two W E S T one two three four five six nine eight seven six five four three two", "iban", "W E S T"),
    ("my account number is seven seven three four one nine two two", "account", "seven seven three"),
    ("my date of birth is the third of May nineteen eighty four", "dob", "nineteen eighty four"),
    ("I live at forty two elm road, apartment five", "address", "elm road"),
    ("my name is mark rivera", "name", "rivera"),
]
WRITTEN = [
    ("My card number is 4111 1111 1111 1111.", "card", "4111"),
    ("You can reach me at (415) 555-0132.", "phone", "555-0132"),
    ("My email is mark.rivera@gmail.com.", "email", "rivera"),
    ("My SSN is 536-22-8147.", "id", "536-22"),
    ("My IBAN is GB82 WEST 1234 5698 7654 32.", "iban", "WEST"),
    ("Order number ABC-1234 hasn't arrived.", "account", "ABC-1234"),
    ("I was born on May 3, 1984.", "dob", "1984"),
    ("Send it to 221B Baker Street, London NW1 6XE.", "address", "Baker"),
    ("I reported to Susan Miller, the VP of engineering.", "name", "Miller"),
]


@pytest.mark.parametrize("line,kind,secret", SPOKEN + WRITTEN)
def test_each_kind_spoken_and_written_becomes_its_tag(redactor, line, kind, secret):
    result = redactor.redact(line, EVERYTHING)
    assert TAGS[kind] in result.text, result
    assert secret not in result.text
    assert [s.kind for s in result.spans].count(kind) == 1


def test_a_card_number_must_pass_the_luhn_check(redactor):
    for bad in ("my card is 4111 1111 1111 1112", "my card is four one one one, one one one one, one one one one, one one one two"):
        result = redactor.redact(bad, EVERYTHING)
        assert "card" not in {s.kind for s in result.spans}, result
        # Still hidden: a long number nothing else claims is an account number (Whisper mishears card numbers).
        assert result.text == "my card is [ACCOUNT]"
    assert redactor.redact("my card is 4111 1111 1111 1111", EVERYTHING).text == "my card is [CARD]"


def test_money_counts_and_years_stay_untouched(redactor):
    for line in ("that's forty nine dollars ninety nine", "the model has four layers", "I've done it two or three times",
                 "in twenty twenty two we shipped", "we cut churn by eight percent", "We now have 40,000,000 monthly users.",
                 "we grew in twenty nineteen, twenty twenty and twenty twenty one", "May I ask who's calling?",
                 "Will you be able to fix it today?", "I paid with my Visa card at Bank of America."):
        assert redactor.redact(line, EVERYTHING) == Redaction(line, ())


def test_names_come_from_cues_and_common_first_names_not_from_capitals(redactor):
    named = {
        "My name is June Carter.": "My name is [NAME].",
        "Priya Raman speaking, how can I help?": "[NAME] speaking, how can I help?",
        "Can I speak to Mr. Okafor?": "Can I speak to Mr. [NAME]?",
        "it's spelled O K A F O R": "it's spelled [NAME]",
        "The card is in Karen Smith's name.": "The card is in [NAME]'s name.",
    }
    for line, redacted in named.items():
        assert redactor.redact(line, EVERYTHING).text == redacted
    for line in ("I'm calling about my bill.", "Mark the date.", "We use Python and Ruby.", "It's Monday.",
                 "Grace period is thirty days.", "Could you transfer me to someone in Billing?"):
        assert redactor.redact(line, EVERYTHING).spans == (), line


def test_spans_are_offsets_into_the_original_line_and_tags_replace_them(redactor):
    line = "hi this is Mark Rivera, my account number is seven seven three four one nine two two and my phone is 415 555 0132"
    result = redactor.redact(line, EVERYTHING)
    assert [line[s.start:s.end] for s in result.spans] == ["Mark Rivera", "seven seven three four one nine two two", "415 555 0132"]
    assert [s.kind for s in result.spans] == ["name", "account", "phone"]
    assert result.text == "hi this is [NAME], my account number is [ACCOUNT] and my phone is [PHONE]"


def test_only_the_kinds_asked_for_are_redacted(redactor):
    line = "My name is Mark Rivera and my number is (415) 555-0132."
    assert redactor.redact(line, frozenset({"phone"})).text == "My name is Mark Rivera and my number is [PHONE]."
    assert redactor.redact(line, frozenset({"name"})).text == "My name is [NAME] and my number is (415) 555-0132."
    assert redactor.redact(line, frozenset()) == Redaction(line, ())
    assert redactor.redact("", EVERYTHING) == Redaction("", ())


def test_overlapping_findings_merge_into_one_span_of_the_stronger_kind():
    findings = [_Finding("phone", 10, 20, 0.4), _Finding("account", 12, 26, 0.85), _Finding("name", 30, 35, 0.6)]
    assert merge(findings) == [_Finding("account", 10, 26, 0.85), _Finding("name", 30, 35, 0.6)]
    tie = [_Finding("phone", 0, 10, 0.4), _Finding("account", 0, 12, 0.4)]
    assert merge(tie) == [_Finding("account", 0, 12, 0.4)]  # same score: the longer one's kind


def test_spoken_forms_map_back_to_the_original_text():
    line = "call four one five, five five five, oh one three two or mark dot rivera at gmail dot com"
    normalised = normalise(line)
    assert normalised.text == "call 4155550132 or mark.rivera@gmail.com"
    digits = normalised.text.index("4155550132")
    assert line[slice(*normalised.span(digits, digits + 10))] == "four one five, five five five, oh one three two"
    email = normalised.text.index("mark.rivera")
    assert line[slice(*normalised.span(email, len(normalised.text)))] == "mark dot rivera at gmail dot com"
    assert normalise("no numbers here").text == "no numbers here"
    assert normalise("the third of May nineteen eighty four").text == "the 3rd of May 1984"
    assert normalise("double five triple seven, two thousand and five").text == "557772005"


def test_many_threads_at_once_get_the_same_results_as_one(redactor):
    lines = [row.text for row in load_labelled()]
    alone = [redactor.redact(line, EVERYTHING) for line in lines]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(lambda line: redactor.redact(line, EVERYTHING), lines)) == alone


def test_nothing_touches_the_network(monkeypatch):
    """Presidio's own e-mail check fetches the public suffix list on first use; ours reads the bundled copy."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    fresh = Redactor.load()  # a new analyzer: the suffix list is read here, under the block
    assert fresh.redact("email me at mark.rivera@gmail.com", EVERYTHING).text == "email me at [EMAIL]"
    assert fresh.redact("it's priya dot raman at outlook dot co dot uk", EVERYTHING).text == "it's [EMAIL]"
    assert attempts == []


def test_importing_the_kinds_or_the_package_does_not_load_presidio():
    code = ("import sys, earshot.models.redaction.kinds, earshot.models.redaction\n"
            "from earshot.models.redaction import Redactor\n"
            "print(sorted(m for m in sys.modules if m.startswith(('presidio', 'spacy'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"


# --- the labelled set ----------------------------------------------------------------------------
# Measured on tests/data/redaction/labelled.jsonl (bench/redaction_bench.py, README table).
MEASURED_RECALL = {"card": 1.0, "phone": 1.0, "email": 1.0, "id": 1.0, "iban": 1.0, "account": 0.976, "dob": 1.0,
                   "address": 1.0, "name": 0.976}
MEASURED_PRECISION = {kind: 1.0 for kind in KINDS}
MARGIN = 0.05


def test_the_labelled_set_is_well_formed():
    rows = load_labelled()
    assert {row.form for row in rows} == {*FORMS, "clean"} and {row.set for row in rows} == {"tuning", "held-out"}
    for row in rows:
        assert (row.form == "clean") == (not row.spans), row
        ends = [0]
        for span in sorted(row.spans, key=lambda s: s.start):
            assert span.kind in KINDS and ends[-1] <= span.start < span.end <= len(row.text), row
            assert row.text[span.start:span.end] == row.text[span.start:span.end].strip(), row
            ends.append(span.end)
    for kind in KINDS:
        assert sum(s.kind == kind for row in rows for s in row.spans) >= 25, kind
        for form in FORMS:
            assert sum(s.kind == kind for row in rows if row.form == form for s in row.spans) >= 10, (kind, form)
    assert sum(row.form == "clean" for row in rows) >= 60
    assert LABELLED.with_name("README.md").is_file()


def test_recall_and_precision_per_kind_hold_and_clean_lines_stay_clean(redactor):
    result = score(redactor, load_labelled())
    assert result["clean"]["changed"] == []
    for kind in KINDS:
        row = result["per_kind"][kind]["all"]
        assert row["recall"] >= MEASURED_RECALL[kind] - MARGIN, (kind, row, result["errors"])
        assert row["precision"] >= MEASURED_PRECISION[kind] - MARGIN, (kind, row, result["errors"])


def test_pii_span_and_redaction_are_plain_frozen_values():
    span = PiiSpan("card", 3, 9)
    assert span == PiiSpan("card", 3, 9) and hash(span) == hash(PiiSpan("card", 3, 9))
    with pytest.raises(AttributeError):
        span.kind = "phone"  # type: ignore[misc]
    assert Redaction("x", (span,)).spans == (span,)


def test_the_redactor_loads_without_torch_or_transformers_and_leaves_them_importable():
    """Presidio and spaCy load with both hidden (models/redaction/recognizers.py): a server with the checked ONNX
    encoder never loads torch. In a fresh process: the redactor works, neither was imported, both import after."""
    script = (
        "import json, sys\n"
        "from earshot.models.redaction.kinds import KINDS\n"
        "from earshot.models.redaction.redactor import Redactor\n"
        "text = Redactor.load().redact('my card is 4111 1111 1111 1111', frozenset(KINDS)).text\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "import torch, transformers\n"
        "print(json.dumps({'text': text, 'heavy': heavy, 'torch_after': bool(torch.__version__)}))\n"
    )
    assert fresh_process_json(script) == {"text": "my card is [CARD]", "heavy": [], "torch_after": True}

"""The labelled intent data set: the committed files, their build, and the loader's validation."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from earshot.models.intent import LABEL_SETS
from earshot.models.intent_dataset import DATA_DIR, SPLITS, STYLES, IntentDataError, load_dataset, load_label_sets
from earshot.models.intent_dataset_build import asr_text, build_dataset


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name) for name in LABEL_SETS}


def copy_sources(target):
    """What build_dataset reads (and the card it fills in), copied to `target`."""
    target.mkdir(exist_ok=True)
    for name in ["labels.json", "README.md"] + [f"base_{s}.tsv" for s in LABEL_SETS]:
        shutil.copy(DATA_DIR / name, target / name)
    return target


def test_label_order_and_definitions_come_from_labels_json(datasets):
    label_sets = load_label_sets()
    assert tuple(label_sets) == LABEL_SETS
    assert list(label_sets["interview"]) == [
        "answering", "asks_to_repeat", "asks_for_clarification", "asks_to_skip", "asks_for_hint", "wants_to_stop", "off_topic",
    ]
    assert list(label_sets["call_center"]) == [
        "billing_inquiry", "complaint", "cancellation", "technical_problem", "account_change",
        "order_status", "feedback_praise", "escalation", "greeting_other",
    ]
    for name, data in datasets.items():
        assert data.labels == tuple(label_sets[name])
        assert all(len(definition.split()) >= 8 for definition in data.definitions.values())


def test_every_label_has_enough_examples_in_every_split(datasets):
    for name, data in datasets.items():
        for label in data.labels:
            total = sum(label in u.labels for u in data.examples)
            assert total >= 60, (name, label, total)
            for split in SPLITS:
                assert any(label in u.labels for u in data.split(split)), (name, label, split)


def test_every_label_has_at_least_forty_hand_written_bases(datasets):
    for name, data in datasets.items():
        bases = Counter(label for u in data.examples if u.style == "clean" for label in u.labels)
        assert min(bases[label] for label in data.labels) >= 40, (name, bases)


def test_a_tenth_or_more_of_the_utterances_carry_several_labels(datasets):
    for name, data in datasets.items():
        bases = [u for u in data.examples if u.style == "clean"]
        assert sum(len(u.labels) > 1 for u in bases) / len(bases) >= 0.12, name
        assert sum(len(u.labels) > 1 for u in data.examples) / len(data.examples) >= 0.10, name


def test_groups_never_cross_splits_and_the_split_is_about_70_15_15(datasets):
    for name, data in datasets.items():
        split_of: dict[str, set[str]] = {}
        for u in data.examples:
            split_of.setdefault(u.group, set()).add(u.split)
        assert all(len(splits) == 1 for splits in split_of.values()), name
        shares = Counter(next(iter(s)) for s in split_of.values())
        assert abs(shares["train"] / len(split_of) - 0.70) < 0.03, (name, shares)
        assert abs(shares["validation"] / len(split_of) - 0.15) < 0.03, (name, shares)
        # The same words must not sit in two splits under different groups either.
        text_split = {}
        for u in data.examples:
            assert text_split.setdefault(u.text, u.split) == u.split, (name, u.text)


def test_each_group_is_one_clean_base_and_one_or_two_variants(datasets):
    for data in datasets.values():
        groups: dict[str, list] = {}
        for u in data.examples:
            groups.setdefault(u.group, []).append(u)
        for members in groups.values():
            assert members[0].style == "clean" and 2 <= len(members) <= 3
            assert len({u.labels for u in members}) == 1 and len({u.text for u in members}) == len(members)


def test_all_styles_are_present_and_asr_text_looks_like_unpunctuated_whisper(datasets):
    for name, data in datasets.items():
        styles = Counter(u.style for u in data.examples)
        assert set(styles) == set(STYLES), (name, styles)
        for u in data.examples:
            if u.style in ("asr", "disfluent"):
                assert u.text == u.text.lower(), u.text
                assert re.fullmatch(r"[a-z0-9' -]+", u.text), u.text
                assert not re.search(r"(^|\s)[-']|[-'](\s|$)", u.text), u.text  # only inside words
        disfluent = [u.text.split() for u in data.examples if u.style == "disfluent"]
        assert all({"uh", "um", "like", "so", "well", "know", "mean"} & set(words) for words in disfluent)


def test_asr_text_spells_numbers_the_way_a_caller_says_them():
    assert asr_text("I want to- I want to cancel.", spell_numbers=False) == "i want to i want to cancel"
    assert asr_text("A $15 fee on the 21st, 10% off?", spell_numbers=True) == "a fifteen dollars fee on the twenty-first ten percent off"
    assert asr_text("A $15 fee on the 21st, 10% off?", spell_numbers=False) == "a 15 dollars fee on the 21st 10 percent off"
    assert asr_text("Born March 4th, 1982; last four 2291.", spell_numbers=True) == "born march fourth nineteen eighty-two last four two two nine one"
    assert asr_text("It's \"ownership\", the Wi-Fi.", spell_numbers=True) == "it's ownership the wi-fi"


def test_targets_are_multi_hot_in_label_order(datasets):
    data = datasets["interview"]
    train = data.split("train")
    targets = data.targets(train)
    assert targets.dtype == np.float32 and targets.shape == (len(train), len(data.labels))
    for row, u in zip(targets, train):
        assert [data.labels[i] for i in np.flatnonzero(row)] == sorted(u.labels, key=data.labels.index)
    with pytest.raises(ValueError, match="unknown split"):
        data.split("dev")


def test_building_reproduces_the_committed_files_byte_for_byte(tmp_path):
    built = copy_sources(tmp_path / "data")
    build_dataset(built)
    first = {name: (built / name).read_bytes() for name in [f"{s}.jsonl" for s in LABEL_SETS] + ["README.md"]}
    for name, content in first.items():
        assert content == (DATA_DIR / name).read_bytes(), f"{name} is stale: run python -m earshot.models.intent_dataset"
    build_dataset(built)
    assert all((built / name).read_bytes() == content for name, content in first.items())


def test_a_later_batch_of_bases_leaves_every_earlier_example_in_its_split(tmp_path):
    """The harder bases were appended as batches: without them the build is the original data set, line for line."""
    built = copy_sources(tmp_path / "data")
    for label_set in LABEL_SETS:
        base = built / f"base_{label_set}.tsv"
        text = base.read_text()
        assert "\n#@batch " in text
        base.write_text(text[: text.index("\n#@batch ") + 1])
    build_dataset(built)
    for label_set in LABEL_SETS:
        before = (built / f"{label_set}.jsonl").read_text().splitlines()
        now = (DATA_DIR / f"{label_set}.jsonl").read_text().splitlines()
        assert now[: len(before)] == before and len(now) > len(before)
        added = [json.loads(line) for line in now[len(before):]]
        assert {record["split"] for record in added} == {"train", "validation", "test"}


def test_a_batch_line_needs_a_name(tmp_path):
    built = copy_sources(tmp_path / "data")
    base = built / "base_interview.tsv"
    base.write_text(base.read_text() + "#@batch\n")
    with pytest.raises(IntentDataError, match=r"base_interview\.tsv:\d+: `#@batch` needs a name"):
        build_dataset(built)


def test_an_unknown_label_in_a_data_file_names_the_file_line_and_label(tmp_path):
    data = copy_sources(tmp_path / "data")
    shutil.copy(DATA_DIR / "call_center.jsonl", data / "call_center.jsonl")
    lines = (data / "call_center.jsonl").read_text().splitlines()
    record = json.loads(lines[6])
    record["labels"] = ["billing_inquiry", "refund_request"]
    lines[6] = json.dumps(record)
    (data / "call_center.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(IntentDataError, match=r"call_center\.jsonl:7: unknown label 'refund_request'; known: billing_inquiry, complaint"):
        load_dataset("call_center", data)


def test_an_unknown_label_in_a_base_file_names_the_file_line_and_label(tmp_path):
    data = copy_sources(tmp_path / "data")
    base = data / "base_interview.tsv"
    base.write_text(base.read_text() + "asks_to_repeat,asks_for_answer\tCould you give me the answer?\n")
    line = len(base.read_text().splitlines())
    with pytest.raises(IntentDataError, match=rf"base_interview\.tsv:{line}: unknown label 'asks_for_answer'; known: answering"):
        build_dataset(data)


GOOD = {"id": "interview-0001", "text": "can you say that again", "labels": ["asks_to_repeat"], "style": "asr", "group": "interview-g0001", "split": "train"}


@pytest.mark.parametrize(
    "second, problem",
    [
        ("{not json", r":2: malformed JSON"),
        ({**GOOD, "id": "interview-0002", "text": "  "}, r":2: empty text"),
        ({**GOOD, "id": "interview-0002", "labels": []}, r":2: no labels"),
        ({**GOOD, "id": "interview-0002", "labels": ["off_topic", "off_topic"]}, r":2: duplicate label\(s\): off_topic"),
        ({**GOOD, "text": "pardon"}, r":2: duplicate id 'interview-0001' \(first at line 1\)"),
        ({**GOOD, "id": "interview-0002", "split": "dev"}, r":2: unknown split 'dev'"),
        ({**GOOD, "id": "interview-0002", "style": "shouted"}, r":2: unknown style 'shouted'"),
        ({**GOOD, "id": "interview-0002", "split": "test"}, r":2: group 'interview-g0001' is in split 'test' here but 'train' at line 1"),
        ({k: v for k, v in GOOD.items() if k != "group"}, r":2: missing field\(s\): group"),
    ],
)
def test_the_loader_rejects_broken_records_with_file_and_line(tmp_path, second, problem):
    shutil.copy(DATA_DIR / "labels.json", tmp_path / "labels.json")
    lines = [json.dumps(GOOD), second if isinstance(second, str) else json.dumps(second)]
    (tmp_path / "interview.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(IntentDataError, match=r"interview\.jsonl" + problem):
        load_dataset("interview", tmp_path)


def test_unknown_label_sets_are_refused(tmp_path):
    with pytest.raises(IntentDataError, match="unknown label set 'sales'"):
        load_dataset("sales")
    labels = json.loads((DATA_DIR / "labels.json").read_text())
    labels["sales"] = {"buy": "wants to buy"}
    (tmp_path / "labels.json").write_text(json.dumps(labels, indent=2))
    with pytest.raises(IntentDataError, match=r"labels\.json:\d+: unknown label set 'sales'"):
        load_label_sets(tmp_path / "labels.json")

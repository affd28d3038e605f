"""Building the labelled intent data set from hand-written bases.

Each base utterance becomes a group: its clean text plus one or two variants
derived from it by seeded code (`asr`: lower case, no punctuation, numbers
sometimes as words; `disfluent`: asr plus fillers and sometimes a restart).
Whole groups go to train / validation / test (70/15/15, stratified by the
group's first label), so no variant of a test utterance is trained on.

A base file grows in batches: a `#@batch NAME` line starts a new batch, and
each batch is split by the same rule among its own bases (seeded with its
name). Adding a batch therefore leaves every earlier base in the split it was
in (the test split keeps its examples) and spreads the new bases 70/15/15.

`build_dataset` writes models/intent_data/<set>.jsonl and the counts in the
data card (`python -m earshot.models.intent_dataset` runs it); building twice
gives byte-identical files. models/intent_dataset.py loads what it writes.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from earshot.models.intent import LABEL_SETS
from earshot.models.intent_dataset import (
    DATA_DIR,
    SPLITS,
    STYLES,
    IntentDataset,
    check_labels,
    data_error,
    load_dataset,
    load_label_sets,
)
from earshot.models.text import digit_words, number_to_words, ordinal_words, year_words

SPLIT_SHARES = {"validation": 0.15, "test": 0.15}  # train gets the rest of each stratum
CARD_START = "<!-- counts:start -->"
CARD_END = "<!-- counts:end -->"

# "uh"/"um" go anywhere; discourse markers only where a speaker would pause, not after "the", "to", ...
HESITATIONS = ("uh", "um")
DISCOURSE_MARKERS = ("like", "you know", "i mean", "so", "well")
_BOUND_TO_NEXT = set(
    "a an the my your our his her their its this that these those to of for in on at with from by about "
    "i you we they he she it i'm i'd i've i'll is are was were be can could would will should do does did".split()
)
# A restart repeats a phrase from its start: "i want to i want to cancel", "on the on the".
_PHRASE_OPENERS = _BOUND_TO_NEXT - {"is", "are", "was", "were", "be", "its", "his", "her"}


def _caller_number(digits: str) -> str:
    """How a caller says a bare number: small ones as words, years as years, longer ones digit by digit."""
    n = int(digits)
    if len(digits) < 4 and not digits.startswith("0"):
        return number_to_words(n)
    if len(digits) == 4 and (1900 <= n < 2000 or 2010 <= n < 2100):  # a year: "nineteen eighty-two"
        return year_words(n)
    if len(digits) == 4 and 2000 <= n < 2010:
        return number_to_words(n)  # "two thousand five"
    return digit_words(digits)  # account, order and phone digits


def asr_text(clean: str, spell_numbers: bool) -> str:
    """What Whisper without punctuation gives: lower case, words only, apostrophes and inner hyphens kept."""
    text = clean.replace("\u2019", "'").replace("\u2018", "'").replace("\u2014", " ").replace("\u2013", " ")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    amount = (lambda m: number_to_words(int(m.group(1)))) if spell_numbers else (lambda m: m.group(1))
    text = re.sub(r"\$(\d+)", lambda m: amount(m) + " dollars", text)
    text = re.sub(r"(\d+)%", lambda m: amount(m) + " percent", text)
    text = re.sub(r"\b(\d{1,2}):(\d\d)\b", r"\1 \2", text)
    if spell_numbers:
        text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_words(int(m.group(1))), text)
        text = re.sub(r"\d+", lambda m: _caller_number(m.group(0)), text)
    text = text.lower()
    text = re.sub(r"[^a-z0-9'\- ]", " ", text)
    text = re.sub(r"(?<![a-z0-9])-|-(?![a-z0-9])", " ", text)  # a cut-off "to-" is not transcribed
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not contractions
    return " ".join(text.split())


def disfluent_text(asr: str, rng: random.Random) -> str:
    """asr text with one or two fillers and, half the time, a restart ("i want to i want to cancel")."""
    words = asr.split()
    openers = [i for i in range(len(words) // 2 + 1) if i == 0 or words[i] in _PHRASE_OPENERS]
    if len(words) >= 3 and rng.random() < 0.5:
        start = rng.choice(openers)
        length = rng.randint(1, min(3, len(words) - start - 1))
        words = words[: start + length] + words[start:]
    for _ in range(1 if len(words) < 6 else rng.randint(1, 2)):
        position = rng.randrange(0, len(words))
        after_bound = position > 0 and words[position - 1] in _BOUND_TO_NEXT
        words.insert(position, rng.choice(HESITATIONS if after_bound or rng.random() < 0.5 else DISCOURSE_MARKERS))
    return " ".join(words)


def _variants(clean: str, rng: random.Random) -> list[tuple[str, str]]:
    """(style, text) for a base: clean, then asr and/or disfluent, without repeats."""
    asr = asr_text(clean, spell_numbers=rng.random() < 0.5)
    disfluent = disfluent_text(asr, rng)
    roll = rng.random()
    styles = ("asr", "disfluent") if roll < 0.5 else ("asr",) if roll < 0.75 else ("disfluent",)
    out = [("clean", clean)]
    for style in styles:
        text = asr if style == "asr" else disfluent
        if text not in (t for _, t in out):
            out.append((style, text))
    if len(out) == 1:  # the clean text was already asr style
        out.append(("disfluent", disfluent))
    return out


BATCH_MARKER = "#@batch"


@dataclass(frozen=True)
class _Base:
    labels: tuple[str, ...]
    text: str
    batch: str = ""  # "" = the first batch (the bases before any `#@batch` line)


def read_bases(path: Path, known: Sequence[str]) -> list[_Base]:
    """A base file: `labels<TAB>utterance` per line, labels comma-separated, `#` comments, `#@batch NAME` batches."""
    bases: list[_Base] = []
    seen: dict[str, int] = {}
    batch = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if raw.startswith(BATCH_MARKER):
            batch = raw[len(BATCH_MARKER) :].strip()
            if not batch:
                raise data_error(path, number, f"`{BATCH_MARKER}` needs a name")
            continue
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw.count("\t") != 1:
            raise data_error(path, number, "expected `labels<TAB>utterance` (exactly one tab)")
        label_field, text = raw.split("\t")
        text = text.strip()
        if not text:
            raise data_error(path, number, "empty text")
        labels = check_labels(path, number, [x.strip() for x in label_field.split(",") if x.strip()], known)
        # Two bases that read the same once spoken would put one sentence in two splits.
        key = asr_text(text, spell_numbers=True)
        if key in seen:
            raise data_error(path, number, f"duplicate utterance (same as line {seen[key]})")
        seen[key] = number
        bases.append(_Base(labels, text, batch))
    return bases


def assign_splits(bases: Sequence[_Base], labels: Sequence[str], seed: int, label_set: str) -> list[str]:
    """Each base's split: 15% validation, 15% test, the rest train, within each batch's first-label strata."""
    splits = ["train"] * len(bases)
    batches = sorted({base.batch for base in bases}, key=lambda name: min(i for i, b in enumerate(bases) if b.batch == name))
    for batch, label in ((batch, label) for batch in batches for label in labels):
        members = [i for i, base in enumerate(bases) if base.labels[0] == label and base.batch == batch]
        # The first batch keeps the seed it always had, so its splits never move.
        random.Random(f"{seed}:{label_set}:{label}" + (f":{batch}" if batch else "")).shuffle(members)
        n_val, n_test = (int(len(members) * SPLIT_SHARES[name] + 0.5) for name in ("validation", "test"))
        for i in members[:n_val]:
            splits[i] = "validation"
        for i in members[n_val : n_val + n_test]:
            splits[i] = "test"
    return splits


def build_dataset(data_dir: Path | None = None, seed: int = 13) -> dict[str, IntentDataset]:
    """Read base_<set>.tsv, write <set>.jsonl (and the counts in README.md), return the loaded sets."""
    data_dir = data_dir or DATA_DIR
    label_sets = load_label_sets(data_dir / "labels.json")
    for label_set in LABEL_SETS:
        known = tuple(label_sets[label_set])
        bases = read_bases(data_dir / f"base_{label_set}.tsv", known)
        splits = assign_splits(bases, known, seed, label_set)
        lines = []
        for number, (base, split) in enumerate(zip(bases, splits), start=1):
            # Seeded by the text, so editing one base leaves every other group's variants as they were.
            rng = random.Random(f"{seed}:{label_set}:{base.text}")
            for style, text in _variants(base.text, rng):
                record = {
                    "id": f"{label_set}-{len(lines) + 1:04d}",
                    "text": text,
                    "labels": list(base.labels),
                    "style": style,
                    "group": f"{label_set}-g{number:04d}",
                    "split": split,
                }
                lines.append(json.dumps(record, ensure_ascii=False))
        (data_dir / f"{label_set}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    datasets = {name: load_dataset(name, data_dir) for name in LABEL_SETS}
    _write_card_counts(data_dir / "README.md", datasets)
    return datasets


# ---------------------------------------------------------------- counts


def batch_of_groups(data: IntentDataset, data_dir: Path | None = None) -> dict[str, str]:
    """group -> the batch of bases it comes from ("original" = before any `#@batch` line)."""
    path = (data_dir or DATA_DIR) / f"base_{data.label_set}.tsv"
    batch_of: dict[str, str] = {}
    if path.is_file():
        bases = read_bases(path, data.labels)
        batch_of = {f"{data.label_set}-g{n:04d}": base.batch or "original" for n, base in enumerate(bases, start=1)}
    return {u.group: batch_of.get(u.group, "original") for u in data.examples}


def batch_counts(data: IntentDataset, data_dir: Path | None = None) -> dict[str, dict[str, int]]:
    """Examples per base batch and split, for evaluation files."""
    batch_of = batch_of_groups(data, data_dir)
    counts: dict[str, Counter[str]] = {}
    for u in data.examples:
        counts.setdefault(batch_of[u.group], Counter())[u.split] += 1
    return {batch: {split: c[split] for split in SPLITS} for batch, c in counts.items()}



def counts_markdown(datasets: dict[str, IntentDataset]) -> str:
    """Per label set: examples per label and split, groups, styles and the multi-label share."""
    parts = []
    for name, data in datasets.items():
        groups = {u.group: u.labels for u in data.examples}
        multi = sum(len(labels) > 1 for labels in groups.values())
        styles = Counter(u.style for u in data.examples)
        per = Counter((label, u.split) for u in data.examples for label in u.labels)
        bases_per = Counter(label for labels in groups.values() for label in labels)
        parts.append(f"### {name}\n")
        parts.append(
            f"{len(groups)} base utterances, {len(data.examples)} examples "
            f"({', '.join(f'{s} {styles[s]}' for s in STYLES)}). "
            f"Multi-label: {multi} bases ({multi / len(groups):.1%}), "
            f"{sum(len(u.labels) > 1 for u in data.examples)} examples "
            f"({sum(len(u.labels) > 1 for u in data.examples) / len(data.examples):.1%}).\n"
        )
        parts.append("| label | bases | train | validation | test | total |")
        parts.append("|---|---:|---:|---:|---:|---:|")
        for label in data.labels:
            row = [per[label, s] for s in SPLITS]
            parts.append(f"| `{label}` | {bases_per[label]} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
        row = [len(data.split(s)) for s in SPLITS]
        parts.append(f"| **examples** | {len(groups)} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
        parts.append("")
    return "\n".join(parts)


def _write_card_counts(card: Path, datasets: dict[str, IntentDataset]) -> None:
    """Replace the text between the markers in the data card, if there is one."""
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start < 0 or end < start:
        raise data_error(card, None, f"missing the {CARD_START} ... {CARD_END} markers for the counts")
    generated = "\n\n" + counts_markdown(datasets).rstrip() + "\n\n"
    card.write_text(text[: start + len(CARD_START)] + generated + text[end:], encoding="utf-8")




def main() -> int:
    datasets = build_dataset()
    for name in LABEL_SETS:
        print(f"wrote {DATA_DIR / f'{name}.jsonl'}")
    print()
    print(counts_markdown(datasets))
    return 0

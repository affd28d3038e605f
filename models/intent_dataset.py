"""The labelled intent data set: building it from hand-written bases, and loading it.

    models/intent_data/labels.json          label sets, label order and definitions
    models/intent_data/base_<set>.tsv       hand-written bases: `labels<TAB>utterance`
    models/intent_data/<set>.jsonl          generated (committed): every example with its split

Each base utterance becomes a group: its clean text plus one or two variants
derived from it by seeded code (`asr`: lower case, no punctuation, numbers
sometimes as words; `disfluent`: asr plus fillers and sometimes a restart).
Whole groups go to train / validation / test (70/15/15, stratified by the
group's first label), so no variant of a test utterance is trained on.

`python -m earshot.models.intent_dataset` rebuilds the jsonl files and the counts in
the data card; building twice gives byte-identical files.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.models.intent import LABEL_SETS

DATA_DIR = Path(__file__).resolve().parent / "intent_data"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
STYLES: tuple[str, ...] = ("clean", "asr", "disfluent")
SPLIT_SHARES = {"validation": 0.15, "test": 0.15}  # train gets the rest of each stratum
CARD_START = "<!-- counts:start -->"
CARD_END = "<!-- counts:end -->"
_FIELDS = ("id", "text", "labels", "style", "group", "split")


class IntentDataError(ValueError):
    """A data file breaks the format; the message is `file:line: problem`."""


@dataclass(frozen=True)
class LabelledUtterance:
    id: str
    text: str
    labels: tuple[str, ...]
    style: str  # clean | asr | disfluent
    group: str  # the base utterance it comes from; a group never spans two splits
    split: str  # train | validation | test


@dataclass(frozen=True)
class IntentDataset:
    label_set: str
    labels: tuple[str, ...]  # order from labels.json: the columns of `targets`
    definitions: dict[str, str]
    examples: tuple[LabelledUtterance, ...]

    def split(self, name: str) -> list[LabelledUtterance]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        return [u for u in self.examples if u.split == name]

    def targets(self, examples: Iterable[LabelledUtterance]) -> np.ndarray:
        """Multi-hot rows, (n, len(labels)) float32."""
        column = {name: i for i, name in enumerate(self.labels)}
        rows = list(examples)
        out = np.zeros((len(rows), len(self.labels)), np.float32)
        for i, utterance in enumerate(rows):
            for name in utterance.labels:
                out[i, column[name]] = 1.0
        return out


# ---------------------------------------------------------------- loading


def _fail(path: Path, line: int | None, problem: str) -> IntentDataError:
    where = f"{path}:{line}" if line is not None else str(path)
    return IntentDataError(f"{where}: {problem}")


def _line_of(text: str, needle: str) -> int | None:
    """The first line of labels.json mentioning `needle`, so its errors point somewhere."""
    index = text.find(json.dumps(needle))
    return text.count("\n", 0, index) + 1 if index >= 0 else None


def load_label_sets(path: Path | None = None) -> dict[str, dict[str, str]]:
    """labels.json: {label_set: {label: definition}}, label order as written."""
    path = path or DATA_DIR / "labels.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, exc.lineno, f"malformed JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise _fail(path, 1, "expected an object of label sets")
    for name, labels in data.items():
        if name not in LABEL_SETS:
            raise _fail(path, _line_of(text, name), f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}")
        if not isinstance(labels, dict) or not labels:
            raise _fail(path, _line_of(text, name), f"label set {name!r} must be a non-empty object of label: definition")
        for label, definition in labels.items():
            if not isinstance(definition, str) or not definition.strip():
                raise _fail(path, _line_of(text, label), f"label {label!r} needs a definition")
    missing = [name for name in LABEL_SETS if name not in data]
    if missing:
        raise _fail(path, None, f"missing label set(s): {', '.join(missing)}")
    return {name: dict(data[name]) for name in LABEL_SETS}


def _check_labels(path: Path, line: int, labels: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    if not labels:
        raise _fail(path, line, "no labels")
    for label in labels:
        if label not in known:
            raise _fail(path, line, f"unknown label {label!r}; known: {', '.join(known)}")
    duplicated = sorted({label for label in labels if list(labels).count(label) > 1})
    if duplicated:
        raise _fail(path, line, f"duplicate label(s): {', '.join(duplicated)}")
    return tuple(labels)


def _parse_example(path: Path, line: int, raw: str, known: Sequence[str]) -> LabelledUtterance:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _fail(path, line, f"malformed JSON: {exc.msg}") from exc
    if not isinstance(record, dict):
        raise _fail(path, line, "expected a JSON object")
    missing = [key for key in _FIELDS if key not in record]
    if missing:
        raise _fail(path, line, f"missing field(s): {', '.join(missing)}")
    for key in ("id", "text", "style", "group", "split"):
        if not isinstance(record[key], str):
            raise _fail(path, line, f"{key} must be a string")
    if not isinstance(record["labels"], list) or not all(isinstance(x, str) for x in record["labels"]):
        raise _fail(path, line, "labels must be a list of strings")
    if not record["text"].strip():
        raise _fail(path, line, "empty text")
    if record["split"] not in SPLITS:
        raise _fail(path, line, f"unknown split {record['split']!r}; known: {', '.join(SPLITS)}")
    if record["style"] not in STYLES:
        raise _fail(path, line, f"unknown style {record['style']!r}; known: {', '.join(STYLES)}")
    labels = _check_labels(path, line, record["labels"], known)
    return LabelledUtterance(record["id"], record["text"], labels, record["style"], record["group"], record["split"])


def load_dataset(label_set: str, data_dir: Path | None = None) -> IntentDataset:
    """Read and validate `<data_dir>/<label_set>.jsonl` against `<data_dir>/labels.json`."""
    data_dir = data_dir or DATA_DIR
    if label_set not in LABEL_SETS:
        raise IntentDataError(f"unknown label set {label_set!r}; known: {', '.join(LABEL_SETS)}")
    definitions = load_label_sets(data_dir / "labels.json")[label_set]
    known = tuple(definitions)
    path = data_dir / f"{label_set}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from exc
    examples: list[LabelledUtterance] = []
    id_line: dict[str, int] = {}
    group_split: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        utterance = _parse_example(path, number, raw, known)
        if utterance.id in id_line:
            raise _fail(path, number, f"duplicate id {utterance.id!r} (first at line {id_line[utterance.id]})")
        id_line[utterance.id] = number
        # A group in two splits would leak a test utterance's variants into training.
        first_split, first_line = group_split.setdefault(utterance.group, (utterance.split, number))
        if first_split != utterance.split:
            raise _fail(
                path, number,
                f"group {utterance.group!r} is in split {utterance.split!r} here but {first_split!r} at line {first_line}",
            )
        examples.append(utterance)
    if not examples:
        raise _fail(path, None, "no examples")
    return IntentDataset(label_set, known, definitions, tuple(examples))


# ---------------------------------------------------------------- building

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
# "uh"/"um" go anywhere; discourse markers only where a speaker would pause, not after "the", "to", ...
HESITATIONS = ("uh", "um")
DISCOURSE_MARKERS = ("like", "you know", "i mean", "so", "well")
_BOUND_TO_NEXT = set(
    "a an the my your our his her their its this that these those to of for in on at with from by about "
    "i you we they he she it i'm i'd i've i'll is are was were be can could would will should do does did".split()
)
# A restart repeats a phrase from its start: "i want to i want to cancel", "on the on the".
_PHRASE_OPENERS = _BOUND_TO_NEXT - {"is", "are", "was", "were", "be", "its", "his", "her"}


def number_words(n: int) -> str:
    """0 to 999,999 as Whisper spells them out ("forty-two", "three hundred five")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + number_words(n % 100) if n % 100 else "")
    if n < 1_000_000:
        return number_words(n // 1000) + " thousand" + (" " + number_words(n % 1000) if n % 1000 else "")
    return _digits(str(n))


def _digits(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def _spoken_number(digits: str) -> str:
    """How a caller says a bare number: small ones as words, years as years, longer ones digit by digit."""
    n = int(digits)
    if len(digits) < 4 and not digits.startswith("0"):
        return number_words(n)
    if len(digits) == 4 and (1900 <= n < 2000 or 2010 <= n < 2100):  # a year: "nineteen eighty-two"
        return number_words(n // 100) + " " + (number_words(n % 100) if n % 100 else "hundred")
    if len(digits) == 4 and 2000 <= n < 2010:
        return number_words(n)  # "two thousand five"
    return _digits(digits)  # account, order and phone digits


def _ordinal_words(n: int) -> str:
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    else:
        last = last[:-1] + "ieth" if last.endswith("y") else last + "th"
    return head + sep + last


def asr_text(clean: str, spell_numbers: bool) -> str:
    """What Whisper without punctuation gives: lower case, words only, apostrophes and inner hyphens kept."""
    text = clean.replace("\u2019", "'").replace("\u2018", "'").replace("\u2014", " ").replace("\u2013", " ")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    amount = (lambda m: number_words(int(m.group(1)))) if spell_numbers else (lambda m: m.group(1))
    text = re.sub(r"\$(\d+)", lambda m: amount(m) + " dollars", text)
    text = re.sub(r"(\d+)%", lambda m: amount(m) + " percent", text)
    text = re.sub(r"\b(\d{1,2}):(\d\d)\b", r"\1 \2", text)
    if spell_numbers:
        text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _ordinal_words(int(m.group(1))), text)
        text = re.sub(r"\d+", lambda m: _spoken_number(m.group(0)), text)
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


@dataclass(frozen=True)
class _Base:
    labels: tuple[str, ...]
    text: str


def read_bases(path: Path, known: Sequence[str]) -> list[_Base]:
    """A base file: `labels<TAB>utterance` per line, labels comma-separated, `#` comments."""
    bases: list[_Base] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw.count("\t") != 1:
            raise _fail(path, number, "expected `labels<TAB>utterance` (exactly one tab)")
        label_field, text = raw.split("\t")
        text = text.strip()
        if not text:
            raise _fail(path, number, "empty text")
        labels = _check_labels(path, number, [x.strip() for x in label_field.split(",") if x.strip()], known)
        # Two bases that read the same once spoken would put one sentence in two splits.
        key = asr_text(text, spell_numbers=True)
        if key in seen:
            raise _fail(path, number, f"duplicate utterance (same as line {seen[key]})")
        seen[key] = number
        bases.append(_Base(labels, text))
    return bases


def assign_splits(bases: Sequence[_Base], labels: Sequence[str], seed: int, label_set: str) -> list[str]:
    """Each base's split: 15% validation, 15% test, the rest train, within each first-label stratum."""
    splits = ["train"] * len(bases)
    for label in labels:
        members = [i for i, base in enumerate(bases) if base.labels[0] == label]
        random.Random(f"{seed}:{label_set}:{label}").shuffle(members)
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
        raise _fail(card, None, f"missing the {CARD_START} ... {CARD_END} markers for the counts")
    generated = "\n\n" + counts_markdown(datasets).rstrip() + "\n\n"
    card.write_text(text[: start + len(CARD_START)] + generated + text[end:], encoding="utf-8")


def main() -> int:
    datasets = build_dataset()
    for name in LABEL_SETS:
        print(f"wrote {DATA_DIR / f'{name}.jsonl'}")
    print()
    print(counts_markdown(datasets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The labelled intent data set: loading it, and checking every line as it is read.

    models/intent_data/labels.json          label sets, label order and definitions
    models/intent_data/base_<set>.tsv       hand-written bases: `labels<TAB>utterance`
    models/intent_data/<set>.jsonl          generated (committed): every example with its split

The jsonl files are built from the bases by models/intent_dataset_build.py.
`python -m earshot.models.intent_dataset` rebuilds them and the counts in the
data card; building twice gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.models.intent import LABEL_SETS

DATA_DIR = Path(__file__).resolve().parent / "intent_data"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
STYLES: tuple[str, ...] = ("clean", "asr", "disfluent")
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


def data_error(path: Path, line: int | None, problem: str) -> IntentDataError:
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
        raise data_error(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise data_error(path, exc.lineno, f"malformed JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise data_error(path, 1, "expected an object of label sets")
    for name, labels in data.items():
        if name not in LABEL_SETS:
            raise data_error(path, _line_of(text, name), f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}")
        if not isinstance(labels, dict) or not labels:
            raise data_error(path, _line_of(text, name), f"label set {name!r} must be a non-empty object of label: definition")
        for label, definition in labels.items():
            if not isinstance(definition, str) or not definition.strip():
                raise data_error(path, _line_of(text, label), f"label {label!r} needs a definition")
    missing = [name for name in LABEL_SETS if name not in data]
    if missing:
        raise data_error(path, None, f"missing label set(s): {', '.join(missing)}")
    return {name: dict(data[name]) for name in LABEL_SETS}


def check_labels(path: Path, line: int, labels: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    if not labels:
        raise data_error(path, line, "no labels")
    for label in labels:
        if label not in known:
            raise data_error(path, line, f"unknown label {label!r}; known: {', '.join(known)}")
    duplicated = sorted({label for label in labels if list(labels).count(label) > 1})
    if duplicated:
        raise data_error(path, line, f"duplicate label(s): {', '.join(duplicated)}")
    return tuple(labels)


def _parse_example(path: Path, line: int, raw: str, known: Sequence[str]) -> LabelledUtterance:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise data_error(path, line, f"malformed JSON: {exc.msg}") from exc
    if not isinstance(record, dict):
        raise data_error(path, line, "expected a JSON object")
    missing = [key for key in _FIELDS if key not in record]
    if missing:
        raise data_error(path, line, f"missing field(s): {', '.join(missing)}")
    for key in ("id", "text", "style", "group", "split"):
        if not isinstance(record[key], str):
            raise data_error(path, line, f"{key} must be a string")
    if not isinstance(record["labels"], list) or not all(isinstance(x, str) for x in record["labels"]):
        raise data_error(path, line, "labels must be a list of strings")
    if not record["text"].strip():
        raise data_error(path, line, "empty text")
    if record["split"] not in SPLITS:
        raise data_error(path, line, f"unknown split {record['split']!r}; known: {', '.join(SPLITS)}")
    if record["style"] not in STYLES:
        raise data_error(path, line, f"unknown style {record['style']!r}; known: {', '.join(STYLES)}")
    labels = check_labels(path, line, record["labels"], known)
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
        raise data_error(path, None, f"cannot read: {exc.strerror or exc}") from exc
    examples: list[LabelledUtterance] = []
    id_line: dict[str, int] = {}
    group_split: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        utterance = _parse_example(path, number, raw, known)
        if utterance.id in id_line:
            raise data_error(path, number, f"duplicate id {utterance.id!r} (first at line {id_line[utterance.id]})")
        id_line[utterance.id] = number
        # A group in two splits would leak a test utterance's variants into training.
        first_split, first_line = group_split.setdefault(utterance.group, (utterance.split, number))
        if first_split != utterance.split:
            raise data_error(
                path, number,
                f"group {utterance.group!r} is in split {utterance.split!r} here but {first_split!r} at line {first_line}",
            )
        examples.append(utterance)
    if not examples:
        raise data_error(path, None, "no examples")
    return IntentDataset(label_set, known, definitions, tuple(examples))


if __name__ == "__main__":
    from earshot.models.intent_dataset_build import main

    raise SystemExit(main())

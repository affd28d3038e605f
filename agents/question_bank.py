"""The interview question bank: one JSON file per role, checked when loaded.

Each file `questions/<role>.json` holds a role's questions at every
difficulty. A question is read aloud by the TTS voice, and its key points are
matched by semantic similarity against what the candidate says, so the loader
checks more than the shape: lengths, counts, and that spoken text carries no
markup a voice would read out literally.

A bad bank is a deploy-time mistake, not a run-time one, so the loader checks
everything and reports every problem at once, one line each, naming the file
and the field (`data_scientist.json: questions[3].key_points: ...`). Fixing
one problem per run would be slow for whoever edits the files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from earshot.agents.roles import DIFFICULTIES, ROLES

DEFAULT_DIR = Path(__file__).resolve().parent / "questions"

# Enough per difficulty that a session can pick several without repeating.
MIN_PER_DIFFICULTY = 5
ID_PATTERN = re.compile(r"^[a-z0-9-]+$")
TEXT_CHARS = (20, 300)
KEY_POINTS_COUNT = (3, 6)
KEY_POINT_CHARS = (5, 160)
FOLLOW_UPS_COUNT = (1, 2)
FOLLOW_UP_CHARS = (4, 300)  # a bare "Why?" is a fair follow-up
QUESTION_FIELDS = ("id", "difficulty", "text", "key_points", "follow_ups")
FILE_FIELDS = ("role", "title", "questions")

# Characters a TTS voice would read out ("slash", "asterisk") or that signal
# markdown or code pasted into something meant to be spoken.
UNSPEAKABLE = re.compile(r"[`*#_/\\()\[\]{}<>|=+%&@~^\n\t]")

# Stands for an absent field, so messages can tell it apart from a JSON null.
_MISSING = object()


class QuestionBankError(ValueError):
    """The question files are wrong; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Question:
    id: str
    role: str
    difficulty: str
    text: str
    key_points: tuple[str, ...]
    follow_ups: tuple[str, ...]


@dataclass(frozen=True)
class QuestionBank:
    """Every role's questions; roles in `ROLES` order, questions in file order."""

    all_questions: tuple[Question, ...]
    titles: tuple[tuple[str, str], ...]  # (role, title) pairs, kept hashable
    _by_id: dict[str, Question] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen, so the index is set the way dataclasses set fields themselves.
        object.__setattr__(self, "_by_id", {q.id: q for q in self.all_questions})

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.titles)

    def title(self, role: str) -> str:
        for slug, title in self.titles:
            if slug == role:
                return title
        raise KeyError(f"unknown role {role!r}")

    def questions(self, role: str, difficulty: str) -> list[Question]:
        if role not in self.roles:
            raise KeyError(f"unknown role {role!r}")
        if difficulty not in DIFFICULTIES:
            raise KeyError(f"unknown difficulty {difficulty!r}")
        # A fresh list, so a caller shuffling it cannot reorder the bank.
        return [q for q in self.all_questions if q.role == role and q.difficulty == difficulty]

    def get(self, question_id: str) -> Question:
        try:
            return self._by_id[question_id]
        except KeyError:
            raise KeyError(f"unknown question id {question_id!r}") from None


def load_question_bank(directory: Path = DEFAULT_DIR) -> QuestionBank:
    """Read and check every role's file; raise QuestionBankError listing all problems."""
    directory = Path(directory)
    if not directory.is_dir():
        raise QuestionBankError([f"{directory}: question directory not found"])

    problems: list[str] = []
    files = {path.stem: path for path in sorted(directory.glob("*.json"))}
    for stem in files:
        if stem not in ROLES:
            problems.append(f"{stem}.json: file for unknown role {stem!r} (roles: {', '.join(ROLES)})")

    questions: list[Question] = []
    titles: list[tuple[str, str]] = []
    first_use: dict[str, str] = {}  # id -> "file: questions[i].id", to name both places of a duplicate
    for role in ROLES:
        name = f"{role}.json"
        if role not in files:
            problems.append(f"{name}: missing; every role in agents/roles.py needs a question file")
            continue
        data = _read_json(files[role], problems)
        if data is None:
            continue
        file_questions, title = _check_file(name, role, data, problems)
        # Every declared id counts, even on a question with other faults, so a
        # duplicate is reported in the same run as those faults.
        for index, qid in _declared_ids(data):
            where = f"{name}: questions[{index}].id"
            if qid in first_use:
                problems.append(f"{where}: duplicate id {qid!r}, also at {first_use[qid]}")
            else:
                first_use[qid] = where
        questions.extend(file_questions)
        titles.append((role, title))

    if problems:
        raise QuestionBankError(problems)
    return QuestionBank(all_questions=tuple(questions), titles=tuple(titles))


def _read_json(path: Path, problems: list[str]) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        problems.append(f"{path.name}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path.name}: cannot read: {e}")
    return None


def _check_file(name: str, role: str, data: Any, problems: list[str]) -> tuple[list[Question], str]:
    """Check one role's file; return its valid questions and its title."""
    if not isinstance(data, dict):
        problems.append(f"{name}: expected a JSON object, got {_shown(data)}")
        return [], ""
    _check_keys(name, data, FILE_FIELDS, problems)

    declared_role = data.get("role", _MISSING)
    if declared_role != role:
        problems.append(f"{name}: role: must be {role!r} (the file name), got {_shown(declared_role)}")
    title = data.get("title", _MISSING)
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{name}: title: needs a non-empty string, got {_shown(title)}")
        title = ""

    items = data.get("questions", _MISSING)
    if not isinstance(items, list):
        problems.append(f"{name}: questions: needs a list, got {_shown(items)}")
        return [], title

    valid: list[Question] = []
    for index, item in enumerate(items):
        question = _check_question(f"{name}: questions[{index}]", role, item, problems)
        if question is not None:
            valid.append(question)

    # Count what the file declares, valid or not: a broken question is already
    # reported, and counting it again as "too few" would only add noise.
    declared = [item.get("difficulty") for item in items if isinstance(item, dict)]
    for difficulty in DIFFICULTIES:
        count = declared.count(difficulty)
        if count < MIN_PER_DIFFICULTY:
            needed = f"needs at least {MIN_PER_DIFFICULTY} {difficulty!r} questions"
            problems.append(f"{name}: questions: {needed}, got {count}")
    return valid, title


def _declared_ids(data: Any) -> list[tuple[int, str]]:
    """(index, id) of every question that has a string id, however broken the rest is."""
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [(i, q["id"]) for i, q in enumerate(items) if isinstance(q, dict) and isinstance(q.get("id"), str)]


def _check_question(where: str, role: str, item: Any, problems: list[str]) -> Optional[Question]:
    """Check one question object; return it, or None after recording why not."""
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a JSON object, got {_shown(item)}")
        return None
    before = len(problems)
    _check_keys(where, item, QUESTION_FIELDS, problems)

    qid = item.get("id", _MISSING)
    if not isinstance(qid, str) or not ID_PATTERN.match(qid):
        problems.append(f"{where}.id: needs lowercase letters, digits and hyphens, got {_shown(qid)}")

    difficulty = item.get("difficulty", _MISSING)
    if difficulty is _MISSING:
        problems.append(f"{where}.difficulty: missing, expected one of {', '.join(DIFFICULTIES)}")
    elif difficulty not in DIFFICULTIES:
        expected = ", ".join(DIFFICULTIES)
        problems.append(f"{where}.difficulty: unknown difficulty {_shown(difficulty)}, expected one of {expected}")

    text = item.get("text", _MISSING)
    if _check_string(f"{where}.text", text, TEXT_CHARS, problems):
        _check_spoken_question(f"{where}.text", text, problems)

    key_points = _check_list(f"{where}.key_points", item.get("key_points", _MISSING), KEY_POINTS_COUNT, problems)
    for i, point in enumerate(key_points):
        _check_string(f"{where}.key_points[{i}]", point, KEY_POINT_CHARS, problems)

    follow_ups = _check_list(f"{where}.follow_ups", item.get("follow_ups", _MISSING), FOLLOW_UPS_COUNT, problems)
    for i, follow_up in enumerate(follow_ups):
        if _check_string(f"{where}.follow_ups[{i}]", follow_up, FOLLOW_UP_CHARS, problems):
            _check_spoken_question(f"{where}.follow_ups[{i}]", follow_up, problems)

    if len(problems) > before:
        return None
    return Question(
        id=qid,
        role=role,
        difficulty=difficulty,
        text=text,
        key_points=tuple(key_points),
        follow_ups=tuple(follow_ups),
    )


def _check_keys(where: str, obj: dict, expected: tuple[str, ...], problems: list[str]) -> None:
    # A misspelt field ("keypoints") is named here, beside the "missing" error
    # for the real one, so the fix is obvious.
    for key in obj:
        if key not in expected:
            problems.append(f"{where}: unknown field {key!r}, expected {', '.join(expected)}")


def _check_string(where: str, value: Any, chars: tuple[int, int], problems: list[str]) -> bool:
    if not isinstance(value, str):
        problems.append(f"{where}: needs a string, got {_shown(value)}")
        return False
    low, high = chars
    if not low <= len(value) <= high:
        problems.append(f"{where}: needs {low}-{high} characters, got {len(value)}")
        return False
    if value != value.strip():
        problems.append(f"{where}: has leading or trailing whitespace")
        return False
    return True


def _check_list(where: str, value: Any, count: tuple[int, int], problems: list[str]) -> list:
    if not isinstance(value, list):
        problems.append(f"{where}: needs a list, got {_shown(value)}")
        return []
    low, high = count
    if not low <= len(value) <= high:
        problems.append(f"{where}: needs {low}-{high} items, got {len(value)}")
    return value


def _check_spoken_question(where: str, text: str, problems: list[str]) -> None:
    """Spoken text is one question the voice can read as written."""
    if not text.endswith("?"):
        problems.append(f"{where}: must end with '?' (one spoken question)")
    elif text.count("?") > 1:
        # Two questions in one breath leave the candidate unsure which to answer.
        problems.append(f"{where}: has {text.count('?')} question marks; ask one question")
    bad = sorted(set(UNSPEAKABLE.findall(text)))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        problems.append(f"{where}: has characters a voice would read out or stumble on: {shown}")


def _shown(value: Any) -> str:
    """A value as a message shows it: JSON names for JSON things, never a whole object."""
    if value is _MISSING:
        return "nothing (field missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)

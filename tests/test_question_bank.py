"""The shipped question bank loads, and broken question files are reported precisely.

Every broken case starts from a real copy of the shipped folder and breaks one
thing, so each test also proves the rest of the bank is accepted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from earshot.agents.question_bank import DEFAULT_DIR, QuestionBankError, load_question_bank
from earshot.agents.roles import DIFFICULTIES, ROLES

# --- the shipped bank ---------------------------------------------------------


def test_shipped_bank_loads_with_every_role_and_difficulty():
    bank = load_question_bank()
    assert bank.roles == tuple(ROLES)
    for role in ROLES:
        assert bank.title(role)
        for difficulty in DIFFICULTIES:
            questions = bank.questions(role, difficulty)
            assert len(questions) >= 5, (role, difficulty)
            assert all(q.role == role and q.difficulty == difficulty for q in questions)


def test_shipped_ids_are_unique_and_found_by_get():
    bank = load_question_bank()
    ids = [q.id for q in bank.all_questions]
    assert len(ids) == len(set(ids))
    for q in bank.all_questions:
        assert bank.get(q.id) is q


def test_questions_keep_file_order_and_are_a_copy():
    bank = load_question_bank()
    raw = json.loads((DEFAULT_DIR / "data_scientist.json").read_text())
    in_file = [q["id"] for q in raw["questions"] if q["difficulty"] == "medium"]
    listed = bank.questions("data_scientist", "medium")
    assert [q.id for q in listed] == in_file
    listed.clear()  # a caller's shuffle or pop must not change the bank
    assert [q.id for q in bank.questions("data_scientist", "medium")] == in_file


def test_unknown_lookups_raise_key_error():
    bank = load_question_bank()
    with pytest.raises(KeyError):
        bank.get("no-such-question")
    with pytest.raises(KeyError):
        bank.questions("astronaut", "easy")
    with pytest.raises(KeyError):
        bank.questions("data_scientist", "expert")


# --- broken copies ----------------------------------------------------------------


@pytest.fixture
def bank_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_DIR, tmp_path / "questions"))


def edit(directory: Path, role: str, change: Callable[[dict], None]) -> None:
    path = directory / f"{role}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def problems_of(directory: Path) -> tuple[str, ...]:
    with pytest.raises(QuestionBankError) as caught:
        load_question_bank(directory)
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error) == "\n".join(error.problems)  # one line per problem
    return error.problems


def test_invalid_json_names_file_line_and_column(bank_dir: Path):
    path = bank_dir / "data_scientist.json"
    path.write_text('{\n  "role": "data_scientist",\n  "title": "Data scientist",,\n}')
    (problem,) = problems_of(bank_dir)
    assert problem.startswith("data_scientist.json: invalid JSON at line 3, column ")


def test_too_few_key_points(bank_dir: Path):
    def two_key_points(data):
        data["questions"][3]["key_points"] = data["questions"][3]["key_points"][:2]

    edit(bank_dir, "data_scientist", two_key_points)
    assert problems_of(bank_dir) == ("data_scientist.json: questions[3].key_points: needs 3-6 items, got 2",)


def test_question_without_question_mark(bank_dir: Path):
    def statement(data):
        data["questions"][0]["text"] = data["questions"][0]["text"].rstrip("?") + "."

    edit(bank_dir, "data_scientist", statement)
    (problem,) = problems_of(bank_dir)
    assert problem.startswith("data_scientist.json: questions[0].text: must end with '?'")


def test_unknown_difficulty(bank_dir: Path):
    def expert(data):
        data["questions"][1]["difficulty"] = "expert"

    edit(bank_dir, "data_scientist", expert)
    problems = problems_of(bank_dir)
    assert problems[0].startswith("data_scientist.json: questions[1].difficulty: unknown difficulty 'expert'")


def test_duplicate_id_names_both_places(bank_dir: Path):
    first_id = json.loads((bank_dir / "data_scientist.json").read_text())["questions"][0]["id"]

    def reuse(data):
        data["questions"][2]["id"] = first_id

    edit(bank_dir, "software_engineer", reuse)
    (problem,) = problems_of(bank_dir)
    assert problem.startswith(f"software_engineer.json: questions[2].id: duplicate id '{first_id}'")
    assert "data_scientist.json: questions[0].id" in problem


def test_missing_role_file(bank_dir: Path):
    (bank_dir / "consultancy.json").unlink()
    (problem,) = problems_of(bank_dir)
    assert problem.startswith("consultancy.json: missing")


def test_file_for_unknown_role(bank_dir: Path):
    shutil.copy(bank_dir / "data_scientist.json", bank_dir / "astronaut.json")
    (problem,) = problems_of(bank_dir)
    assert problem.startswith("astronaut.json: file for unknown role 'astronaut'")


def test_role_must_match_file_name(bank_dir: Path):
    edit(bank_dir, "marketing_manager", lambda data: data.update(role="consultancy"))
    (problem,) = problems_of(bank_dir)
    assert problem.startswith("marketing_manager.json: role: must be 'marketing_manager'")


def test_too_few_questions_for_a_difficulty(bank_dir: Path):
    def drop_hard(data):
        data["questions"] = [q for q in data["questions"] if q["difficulty"] != "hard"][:-1] + [
            q for q in data["questions"] if q["difficulty"] == "hard"
        ][:4]

    edit(bank_dir, "customer_service", drop_hard)
    (problem,) = problems_of(bank_dir)
    assert problem == "customer_service.json: questions: needs at least 5 'hard' questions, got 4"


def test_spoken_text_rejects_markup_and_bad_follow_ups(bank_dir: Path):
    def markup(data):
        question = data["questions"][0]
        question["text"] = "What is the big O of `sorted(items)` in Python?"
        question["follow_ups"] = ["Why"]

    edit(bank_dir, "software_engineer", markup)
    problems = problems_of(bank_dir)
    assert problems[0].startswith("software_engineer.json: questions[0].text: has characters a voice would read out")
    assert problems[1].startswith("software_engineer.json: questions[0].follow_ups[0]: needs 4-300 characters")


def test_every_problem_is_reported_together(bank_dir: Path):
    def two_faults(data):
        data["questions"][0]["key_points"] = ["ok", "just two points"]
        data["questions"][5]["follow_ups"] = []
        data["questions"][5]["id"] = data["questions"][0]["id"]  # broken and a duplicate: both reported

    edit(bank_dir, "ml_genai_engineer", two_faults)
    (bank_dir / "consultancy.json").unlink()
    (bank_dir / "data_scientist.json").write_text("not json")
    shutil.copy(bank_dir / "software_engineer.json", bank_dir / "astronaut.json")

    problems = problems_of(bank_dir)
    assert len(problems) == 7
    expected = [
        "astronaut.json: file for unknown role",
        "consultancy.json: missing",
        "data_scientist.json: invalid JSON at line 1, column 1",
        "ml_genai_engineer.json: questions[0].key_points: needs 3-6 items, got 2",
        "ml_genai_engineer.json: questions[0].key_points[0]: needs 5-160 characters, got 2",
        "ml_genai_engineer.json: questions[5].follow_ups: needs 1-2 items, got 0",
        "ml_genai_engineer.json: questions[5].id: duplicate id 'ml-easy-01', also at ml_genai_engineer.json: questions[0].id",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), line

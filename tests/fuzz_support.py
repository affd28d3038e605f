"""What the fuzz tests share: a live server of their own, its tracebacks, and the figures they record.

Each fuzz test module runs against its own server process (rate limits lifted by
TEST_LIMITS), so its log holds only what that module's inputs caused. The figures
go to test-artifacts/fuzz.json, one section per test, for the README.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest

from earshot.loadtest.server_process import ServerProcess, start_server
from tests.conftest import REPO

FIGURES = REPO / "test-artifacts" / "fuzz.json"


@pytest.fixture(scope="module")
def fuzz_server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    server = start_server(redis_url, tmp_path_factory.mktemp("fuzz-server"))
    yield server
    server.stop()


def tracebacks(server: ServerProcess, since: int = 0) -> list[str]:
    """Each traceback in the server's log after character `since`, from its first line to its exception line."""
    found, current = [], None
    for line in server.log()[since:].splitlines():
        if line.startswith("Traceback"):
            current = [line]
        elif current is not None:
            current.append(line)
            if not line.startswith((" ", "\t")) and line.strip() and not line.startswith("During handling"):
                found.append("\n".join(current))
                current = None
    return found


def new_session(base_url: str, **body: str) -> tuple[str, str]:
    body = body or {"mode": "interview", "role": "data_scientist", "difficulty": "easy"}
    response = httpx.post(base_url + "/api/sessions", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["session_id"], response.json()["token"]


def record_figures(section: str, figures: dict[str, Any]) -> None:
    """Print the figures and keep them in test-artifacts/fuzz.json under `section`."""
    print(f"\n{section}: {json.dumps(figures)}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    recorded[section] = figures
    FIGURES.write_text(json.dumps(recorded, indent=2) + "\n")


def assert_json_error(response: httpx.Response, label: str) -> str:
    """A JSON 4xx with a code; returns the code."""
    assert 400 <= response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), f"{label}: {response.text[:300]}"
    error = response.json()["error"]
    assert error["code"] and error["message"], f"{label}: {error}"
    return error["code"]


def assert_no_tracebacks(server: ServerProcess, since: int = 0) -> None:
    found = tracebacks(server, since)
    assert not found, f"{len(found)} tracebacks in the server log; the first:\n{found[0]}"

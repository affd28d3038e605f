"""Schemathesis against a live server, from its own GET /openapi.json: no answer >= 500, no traceback.

The run is bounded: MAX_EXAMPLES cases per operation in the examples, coverage and
fuzzing phases (no stateful phase), each request under REQUEST_TIMEOUT_S, the whole
run under RUN_TIMEOUT_S. The test creates real sessions first and hands schemathesis
their ids (a dictionary drawn from most of the time) and tokens (tests/fuzz_hooks.py),
so the cases reach each endpoint's own checks rather than stopping at 404 or 401.

    EARSHOT_FUZZ_SEED=<n>   another seed (the default is fixed, so a run is repeatable)
    EARSHOT_FUZZ_EXAMPLES   cases per operation (default MAX_EXAMPLES)
"""

import json
import os
import subprocess
import sys
from collections import Counter

import httpx

from tests.conftest import REPO
from tests.fuzz_support import (  # noqa: F401 (fuzz_server is a fixture)
    assert_json_error,
    assert_no_tracebacks,
    fuzz_server,
    new_session,
    record_figures,
    tracebacks,
)

MAX_EXAMPLES = 200
REQUEST_TIMEOUT_S = 10
RUN_TIMEOUT_S = 120  # measured: 300 examples, 1616 requests in 43 s on a shared 2-core machine
SEED = 20261130
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",  # a request the schema forbids is a 4xx (ids, types, enums)
        "missing_required_header",
        "unsupported_method",  # a method a path does not take is a 405 ...
        "allow_header_conformance",  # ... whose Allow header lists exactly the methods it does take
    )
)
# Not run: positive_data_acceptance (a schema cannot say what a usable SDP offer is, so schema-valid
# offers are refused, rightly); ignored_auth (the hooks hand out real tokens; tests/test_api_errors.py
# checks bad ones); the stateful ones (no stateful phase).


def test_schemathesis_finds_no_server_error(fuzz_server, tmp_path):
    sessions = dict(
        new_session(fuzz_server.base_url, **body)
        for body in (
            {"mode": "interview", "role": "data_scientist", "difficulty": "easy"},
            {"mode": "interview", "role": "software_engineer", "difficulty": "hard"},
            {"mode": "transcribe", "role": "consultancy"},
            {"mode": "assist"},
        )
    )
    (tmp_path / "sessions.json").write_text(json.dumps(sessions))
    (tmp_path / "schemathesis.toml").write_text(
        f"[dictionaries.sessions]\nvalues = {json.dumps(list(sessions))}\n\n"
        '[parameters]\n"path.session_id" = { dictionary = "sessions", probability = 0.8 }\n'
    )
    responses = tmp_path / "responses.log"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"),
        "run", fuzz_server.base_url + "/openapi.json",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", os.environ.get("EARSHOT_FUZZ_EXAMPLES", str(MAX_EXAMPLES)),
        "--seed", os.environ.get("EARSHOT_FUZZ_SEED", str(SEED)),
        "--checks", CHECKS,
        "--request-timeout", str(REQUEST_TIMEOUT_S),
        "--workers", "1",
        "--generation-database", "none",
        "--report", "json", "--report-dir", str(tmp_path / "report"),
        "--no-color",
    ]
    # The run's folder is tmp_path (schemathesis keeps a cache there); the hooks module is found on PYTHONPATH.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "EARSHOT_FUZZ_SESSIONS": str(tmp_path / "sessions.json"),
        "EARSHOT_FUZZ_RESPONSES": str(responses),
    }
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    report = json.loads(next((tmp_path / "report").glob("json-*.json")).read_text())

    statuses = Counter(int(line.split(" ", 1)[0]) for line in responses.read_text().splitlines())
    figures = {
        "requests": sum(statuses.values()),
        "operations": report["operations"]["tested"],
        "test_cases": report["test_cases"]["generated"],
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "tracebacks": len(tracebacks(fuzz_server)),
        "statuses": {str(status): statuses[status] for status in sorted(statuses)},
        "seconds": round(report["running_time"], 1),
        "seed": report["seed"],
    }
    record_figures("schemathesis", figures)
    assert report["operations"]["tested"] == report["operations"]["total"] >= 8
    assert figures["server_errors"] == 0, run.stdout[-8000:]
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert_no_tracebacks(fuzz_server)
    assert httpx.get(fuzz_server.base_url + "/healthz", timeout=10).status_code == 200


def _deep(opening: str, closing: str, depth: int = 2000) -> bytes:
    return (opening * depth + closing * depth).encode()


MALFORMED_BODIES = {
    "deep array": _deep("[", "]"),
    "deep object": _deep('{"a":', "}").replace(b"}", b"1}", 1),
    "role list": b'{"role": []}',
    "role object": b'{"role": {"a": 1}}',
    "mode list": b'{"mode": ["interview"], "role": "data_scientist"}',
    "difficulty list": b'{"role": "data_scientist", "difficulty": []}',
    "difficulty object": b'{"role": "data_scientist", "difficulty": {}}',
    "null": b"null",
    "number": b"1e999999",
    "nan": b'{"role": NaN}',
    "not utf-8": b'{"role": "\xff\xfe"}',
    "lone surrogate": b'{"role": "\\udc80"}',
    "nul": b'{"role": "data\\u0000scientist"}',
    "empty": b"",
}


def test_malformed_bodies_and_ids_are_json_4xx(fuzz_server):
    """Inputs a generator rarely reaches: deep nesting, wrong types, odd encodings, odd session ids."""
    url = fuzz_server.base_url
    since = len(fuzz_server.log())
    session_id, token = new_session(url)
    auth = {"Authorization": f"Bearer {token}"}
    failures = []
    # A connection of its own for each request: after a 500 the server closes the one it answered on.
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        requests = [("POST", "/api/sessions", body, {}) for body in MALFORMED_BODIES.values()]
        requests += [("POST", f"/api/sessions/{session_id}/offer", body, auth) for body in MALFORMED_BODIES.values()]
        requests += [
            ("POST", f"/api/sessions/{session_id}/offer", b'{"sdp": "v=0", "type": "offer", "tracks": ' + t + b"}", auth)
            for t in (b"[]", b'"x"', b'{"a": []}', b"1")
        ]
        for odd_id in (f"{session_id}:summary", f"{session_id}:finals", "*", "%00", "a" * 5000, "..%2f..%2fetc"):
            requests += [("GET", f"/api/sessions/{odd_id}", b"", auth), ("DELETE", f"/api/sessions/{odd_id}", b"", auth)]
        for method, path, body, headers in requests:
            label = f"{method} {path[:60]} {body[:40]!r}"
            try:
                assert_json_error(http.request(method, path, content=body, headers=headers), label)
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0][:200])
            except httpx.HTTPError as exc:  # no answer at all
                failures.append(f"{label}: {type(exc).__name__} {exc}")
    record_figures(
        "malformed_requests",
        {"requests": len(requests), "failed": len(failures), "tracebacks": len(tracebacks(fuzz_server, since))},
    )
    assert not failures, "\n".join(failures)
    assert_no_tracebacks(fuzz_server, since)

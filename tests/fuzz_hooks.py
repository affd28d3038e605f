"""Schemathesis hooks for tests/test_fuzz_api.py, loaded by its `st run` child (SCHEMATHESIS_HOOKS).

    before_call  a generated case aimed at one of the test's real sessions carries that session's
                 token (positive cases only: negative ones keep their generated header), so the
                 fuzzer gets past 404 and 401 into each endpoint's own checks
    after_call   one line per response, "<status> <METHOD> <path>", to the file the test reads

The test passes both files by environment: EARSHOT_FUZZ_SESSIONS (JSON, session id -> token)
and EARSHOT_FUZZ_RESPONSES (the response log it counts).
"""

from __future__ import annotations

import json
import os
import threading

import schemathesis
from schemathesis import GenerationMode

TOKENS: dict[str, str] = json.loads(open(os.environ["EARSHOT_FUZZ_SESSIONS"]).read())
_log_lock = threading.Lock()


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    token = TOKENS.get(str((case.path_parameters or {}).get("session_id")))
    meta = case.meta
    if token is not None and (meta is None or meta.generation.mode == GenerationMode.POSITIVE):
        if case.headers is None:
            case.headers = {}
        case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.hook
def after_call(context, case, response) -> None:
    with _log_lock, open(os.environ["EARSHOT_FUZZ_RESPONSES"], "a") as log:
        log.write(f"{response.status_code} {case.method} {case.formatted_path}\n")

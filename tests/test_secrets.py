"""No secret reaches a log, a results file or an error body.

A server runs with every kind of secret set, each from another source: the
storage key from the environment, the LLM API key from a settings file, the
TURN shared secret as a flag (a real coturn), and an API keys file (auth on).
It logs at DEBUG, the most it says. A call (an interview whose LLM is down:
its API key is sent and fails), requests that fail (a wrong or misplaced
credential, bad JSON, an unknown session) and the admin settings page run
against it; the ASR bench (its results record the settings) and the load
tester (it carries an API key) write their files. Then the server's log,
every file written and every response body are searched for each secret,
as it is and in base64 and hex.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio
from earshot.server.api_key_command import new_key, toml_entry
from earshot.server.storage_keys import StorageKey
from tests.conftest import REPO, corpus_file, free_port, start_server
from tests.test_turn import Coturn, coturn  # noqa: F401 (the fixture: a real TURN server with a shared secret)

pytestmark = pytest.mark.slow

CLIP = "utterances/LJ001-0008.wav"  # 1.8 s


def forms(secret: bytes) -> set[bytes]:
    """How a secret could show up: as it is, in base64 (padded or not, URL-safe or not) and in hex."""
    found = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for encoded in (base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        found |= {encoded, encoded.rstrip(b"=")}
    return found


def leaks(blob: bytes, secrets: dict[str, set[bytes]]) -> list[str]:
    return sorted(name for name, variants in secrets.items() if any(v in blob for v in variants))


def one_clip_corpus(folder: Path) -> Path:
    """A corpus of one short utterance: the bench's quickest run."""
    (folder / "utterances").mkdir(parents=True)
    (folder / "utterances" / Path(CLIP).name).write_bytes(corpus_file(CLIP).read_bytes())
    manifest = (corpus_file(CLIP).parent.parent / "manifest.tsv").read_text().splitlines()
    (folder / "manifest.tsv").write_text("\n".join([manifest[0], *(line for line in manifest if line.startswith(CLIP))]) + "\n")
    return folder


async def interview_with_the_llm_down(base_url: str, api_key: str) -> None:
    caller = HeadlessCaller(base_url, b"", role="software_engineer", difficulty="easy", credential=api_key)
    await caller.connect()
    try:
        listening = lambda c: [e["state"] for e in c.of_type("turn")][-1:] == ["listening"]  # noqa: E731
        assert await caller.wait_until(listening, 60), "no first question"
        caller.say(read_audio(corpus_file("utterances/LJ001-0009.wav")))
        # The LLM is asked for a follow-up, with its API key, and is not there.
        assert await caller.wait_until(lambda c: any(e["code"] == "llm_unavailable" for e in c.of_type("error")), 60)
        await caller.api("GET", "/report")
    finally:
        await caller.hangup()


async def failing_requests(base_url: str, api_key: str, misplaced: list[str]) -> list[bytes]:
    """Bodies of requests the server refuses."""
    bodies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        wrong_key = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
        for credential in (wrong_key, *misplaced):
            response = await http.post("/api/sessions", json={"mode": "interview", "role": "software_engineer"},
                                     headers={"Authorization": f"Bearer {credential}"})
            assert response.status_code == 401, response.text
            bodies.append(response.content)
        good = {"Authorization": f"Bearer {api_key}"}
        response = await http.post("/api/sessions", content=b'{"mode": "interview", ', headers={**good, "Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        bodies.append(response.content)
        response = await http.get("/api/sessions/0123456789abcdef", headers=good)
        assert response.status_code == 404, response.text
        bodies.append(response.content)
        response = await http.get("/api/admin/settings", headers=good)
        assert response.status_code == 200, response.text
        bodies.append(response.content)
    return bodies


def bench_results(out: Path, corpus: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_bench", "--quick", "--corpus", str(corpus), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert list(out.glob("*.json")), result.stdout + result.stderr
    (out / "bench-output.txt").write_text(result.stdout + result.stderr)


def loadtest_results(base_url: str, out: Path, corpus: Path, api_key: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "loadtest", "--url", base_url, "--sessions", "1", "--duration", "2",
         "--ramp-up", "0", "--settle", "4", "--audio", str(corpus / "utterances"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "EARSHOT_LOADTEST_CREDENTIAL": api_key},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(out.glob("*.json")), result.stdout
    (out / "loadtest-output.txt").write_text(result.stdout + result.stderr)


async def test_no_secret_in_the_log_the_results_or_an_error(tmp_path, redis_url, coturn, monkeypatch):  # noqa: F811
    storage_key = base64.b64encode(StorageKey.new().secret).decode()
    llm_api_key = "sk-" + base64.urlsafe_b64encode(os.urandom(24)).decode()
    api_key = new_key()
    secrets = {
        "storage_key": forms(storage_key.encode()) | forms(base64.b64decode(storage_key)),
        "llm_api_key": forms(llm_api_key.encode()),
        "turn_secret": forms(coturn.secret.encode()),
        "api_key": forms(api_key.encode()),
    }
    keys_file = tmp_path / "api-keys.toml"
    keys_file.write_text(toml_entry(api_key, "ops", "admin", "") + "\n")
    settings_file = tmp_path / "earshot.toml"
    settings_file.write_text(f'llm_api_key = "{llm_api_key}"\n')
    monkeypatch.setenv("EARSHOT_STORAGE_KEY", storage_key)
    server = start_server(
        redis_url, tmp_path / "server", log_level="DEBUG",
        extra_args=(
            "--settings-file", str(settings_file),
            "--turn-secret", coturn.secret, "--ice-servers", coturn.url,
            "--auth", "on", "--api-keys-file", str(keys_file),
            "--llm-backend", "http", "--llm-url", f"http://127.0.0.1:{free_port()}/v1",
            "--no-tts-enabled", "--interview-questions", "1", "--max-follow-ups", "1", "--turn-pause-ms", "500",
        ),
    )
    outputs = tmp_path / "outputs"
    corpus = one_clip_corpus(tmp_path / "corpus")
    try:
        await interview_with_the_llm_down(server.base_url, api_key)
        bodies = await failing_requests(server.base_url, api_key, misplaced=[llm_api_key, coturn.secret, storage_key])
        loadtest_results(server.base_url, outputs / "loadtest", corpus, api_key)
    finally:
        server.stop()
    bench_env = {
        **os.environ, "EARSHOT_LLM_API_KEY": llm_api_key, "EARSHOT_TURN_SECRET": coturn.secret,
        "EARSHOT_ICE_SERVERS": coturn.url, "EARSHOT_STORAGE_KEY": storage_key,
    }
    bench_results(outputs / "bench", corpus, bench_env)

    assert leaks(settings_file.read_bytes(), secrets) == ["llm_api_key"]  # the search finds what is there
    log = server.log_path.read_bytes()
    # The log is as talkative as it gets (ICE, RTP, auth), and the LLM was tried with its key.
    assert log.count(b" DEBUG ") > 100 and b"cannot reach the LLM server" in log
    assert leaks(log, secrets) == []
    for body in bodies:
        assert leaks(body, secrets) == [], body
    written = [path for path in outputs.rglob("*") if path.is_file()]
    assert {path.suffix for path in written} >= {".json", ".txt"}
    for path in written:
        assert leaks(path.read_bytes(), secrets) == [], path
    bench_json = next((outputs / "bench").glob("*.json")).read_text()
    assert '"llm_api_key": "********"' in bench_json and '"storage_key": "********"' in bench_json

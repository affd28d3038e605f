"""Shared fixtures: real redis-server, real server processes, the speech corpus.

Nothing here is faked: Redis is a redis-server process, the Earshot server is
`python -m earshot.server serve` in a subprocess, and callers are aiortc peers over
loopback ICE.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from earshot.loadtest.server_process import ServerProcess, free_port, start_server  # noqa: F401 (tests import them from here)
from earshot.server.ice import restrict_ice_to_loopback
from earshot.server.redis_server import PrivateRedis

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("EARSHOT_CORPUS", REPO.parent / "shared" / "corpus"))

# The test process hosts headless callers: their media must stay on loopback too.
restrict_ice_to_loopback()


def serve_expecting_failure(redis_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`earshot serve` with `args`, for settings that must stop the start: returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "earshot.server", "serve", "--redis-url", redis_url, "--data-dir", str(tmp_path),
         "--port", str(free_port()), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def fresh_process_json(script: str, timeout_s: float = 180) -> dict:
    """Run `script` in a fresh Python process (nothing imported yet); the last line it prints, as JSON."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.is_file():
        pytest.fail(f"speech corpus file missing: {path} (set EARSHOT_CORPUS to the corpus folder)")
    return path


def reference_text(relative: str) -> str:
    with open(CORPUS / "manifest.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["path"] == relative:
                return row["text"]
    raise KeyError(relative)


class RedisProcess:
    """A redis-server of the test's own, which a test may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self._redis = PrivateRedis(data_dir)

    @property
    def url(self) -> str:
        return self._redis.url

    def start(self) -> str:
        return self._redis.start()

    def stop(self) -> None:
        self._redis.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    yield redis.url
    redis.stop()


@pytest.fixture(scope="session")
def server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    """One server for the tests that do not need their own."""
    srv = start_server(redis_url, tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path / "own-redis")
    redis.start()
    yield redis
    redis.stop()

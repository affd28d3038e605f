"""Shared fixtures: real redis-server, real server processes, the speech corpus.

Nothing here is faked: Redis is a redis-server process, the Earshot server is
`python -m server serve` in a subprocess, and callers are aiortc peers over
loopback ICE.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest

from server.ice import restrict_ice_to_loopback
from server.redis_server import PrivateRedis

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("EARSHOT_CORPUS", REPO.parent / "shared" / "corpus"))

# The test process hosts headless callers: their media must stay on loopback too.
restrict_ice_to_loopback()


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    redis_url: str,
    data_dir: Path,
    port: Optional[int] = None,
    extra_args: tuple[str, ...] = (),
    wait: bool = True,
) -> ServerProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "server", "serve",
            "--port", str(port),
            "--redis-url", redis_url,
            "--data-dir", str(data_dir),
            "--ice-loopback-only",
            *extra_args,
        ],
        cwd=REPO,
        env=env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    if wait:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{server.log()}")
            try:
                if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"server did not come up:\n{server.log()}")
    return server


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

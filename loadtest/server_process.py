"""The Earshot server as a child process: what tests, benchmarks and load tests call.

`python -m earshot.server serve` is started exactly as a user starts it, on a free
port, with loopback-only ICE, and `start_server` returns once `/healthz`
answers (or raises with the server's log).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# The API's abuse limits are sized for real users (server/limits.py); tests, benchmarks and load
# tests create sessions and calls from loopback far faster than any user, so their servers lift them.
TEST_LIMITS = (
    "--rate-sessions-per-min", "0",
    "--rate-offers-per-min", "0",
    "--max-pending-sessions", "100000",
    "--max-live-calls", "64",
)


def start_server(
    redis_url: str,
    data_dir: Path,
    port: Optional[int] = None,
    extra_args: tuple[str, ...] = (),
    wait: bool = True,
    log_level: Optional[str] = None,  # `earshot --log-level` (default INFO)
) -> ServerProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "earshot.server", *(("--log-level", log_level) if log_level else ()), "serve",
            "--port", str(port),
            "--redis-url", redis_url,
            "--data-dir", str(data_dir),
            "--ice-loopback-only",
            *TEST_LIMITS,
            # Tests start many servers on one Redis: each places sessions only among its own group.
            *(() if "--instance-group" in extra_args else ("--instance-group", f"solo-{port}")),
            *extra_args,
        ],
        env=env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    # HTTPS when the arguments ask for it; the health check below trusts any certificate on loopback.
    scheme = "https" if {"--tls", "--tls-cert"} & set(extra_args) else "http"
    server = ServerProcess(f"{scheme}://127.0.0.1:{port}", process, log_path)
    if wait:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{server.log()}")
            try:
                if httpx.get(server.base_url + "/healthz", timeout=1, verify=False).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"server did not come up:\n{server.log()}")
    return server


def wait_ready(server: ServerProcess, timeout_s: float = 120) -> None:
    """Until the server's /healthz/ready says it takes sessions (started with wait=False, many at once)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited at start:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/healthz/ready", timeout=1, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not come up:\n{server.log()}")

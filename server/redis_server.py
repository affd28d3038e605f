"""A private redis-server for when no REDIS_URL is given.

It listens on a Unix socket under `data_dir` (no TCP port to collide with or
expose) and keeps an append-only file there, so finals survive a restart of
Earshot and of Redis itself. If a server from an earlier run still answers on
the socket (Earshot was killed), it is reused rather than started twice.

With `maxmemory` (settings.redis_maxmemory) Redis stops at that size with the
policy `noeviction`: nothing is ever evicted (an evicted key would be a live
session's state or finals, lost in silence); a write past it fails, and the
API answers 507 `store_full` (server/app.py) until sessions expire.

What it holds is private: the folder is 0700 and every file in it (the
append-only files, the log, the socket) 0600. redis-server runs with a
umask of 077, and a folder left by an older run, made before that, has its
modes fixed at start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import redis

SOCKET_NAME = "redis.sock"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


class RedisStartError(RuntimeError):
    pass


def make_private(folder: Path) -> None:
    """The folder and everything under it readable by its owner only (folders 0700, files 0600)."""
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    folder.chmod(FOLDER_MODE)
    for parent, folders, files in os.walk(folder):
        for name in folders:
            path = Path(parent, name)
            if not path.is_symlink():
                path.chmod(FOLDER_MODE)
        for name in files:
            path = Path(parent, name)
            if not path.is_symlink():
                path.chmod(FILE_MODE)


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


class PrivateRedis:
    def __init__(self, data_dir: Path, maxmemory: Optional[str] = None) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.maxmemory = maxmemory  # e.g. "256mb"; None: Redis's own default (no limit)
        self.socket_path = self.dir / SOCKET_NAME
        self._process: Optional[subprocess.Popen] = None
        self._adopted = False  # left running by an earlier, killed run: ours to stop too

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def answers(self) -> bool:
        """Whether a redis-server (this one, or one another process started) answers on the socket."""
        return _answers(self.socket_path)

    def start(self, timeout_s: float = 10.0) -> str:
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise RedisStartError(f"data_dir path too long for a Unix socket: {self.socket_path}")
        make_private(self.dir)
        if _answers(self.socket_path):
            self._adopted = True  # left running by an earlier run: its data is ours
            if self.maxmemory:
                client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5)
                for name, value in self._memory_limit().items():
                    client.config_set(name, value)
            return self.url
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisStartError(
                "redis-server is not installed: run `apt-get install redis-server` "
                "(or `make setup`), or point REDIS_URL at a running Redis"
            )
        self.socket_path.unlink(missing_ok=True)
        log = os.fdopen(os.open(self.dir / "redis.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE), "ab")
        self._process = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", str(self.socket_path),
                "--unixsocketperm", f"{FILE_MODE:o}",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                *(arg for name, value in self._memory_limit().items() for arg in (f"--{name}", value)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches Earshot, which stops it in order
            umask=0o077,  # its append-only files: 0600
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisStartError(f"redis-server exited at start; see {self.dir / 'redis.log'}")
            if _answers(self.socket_path):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RedisStartError(f"redis-server did not answer within {timeout_s} s; see {self.dir / 'redis.log'}")

    def _memory_limit(self) -> dict[str, str]:
        if not self.maxmemory:
            return {}
        return {"maxmemory": self.maxmemory, "maxmemory-policy": "noeviction"}

    def stop(self) -> None:
        if self._adopted:
            self._adopted = False
            try:
                redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5).shutdown()
            except redis.RedisError:
                pass  # it closes the connection as it exits
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._process = None

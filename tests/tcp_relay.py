"""A TCP relay on loopback, in a thread of its own: a load balancer, or a link to Redis a test can cut.

Each connection goes to the first backend that accepts it, in order, as a load
balancer passes over an instance that refuses connections. `cut()` closes the
listener and every connection: what is behind it is then unreachable.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable

Backend = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def tcp(host: str, port: int) -> Backend:
    return lambda: asyncio.open_connection(host, port)


def unix(path: str) -> Backend:
    return lambda: asyncio.open_unix_connection(path)


class TcpRelay:
    def __init__(self, backends: list[Backend]) -> None:
        self._backends = backends
        self._loop = asyncio.new_event_loop()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the relay did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self, ready: threading.Event) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in self._backends:
            try:
                to_reader, to_writer = await backend()
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        self._writers += [writer, to_writer]
        await asyncio.gather(_pipe(reader, to_writer), _pipe(to_reader, writer))

    def cut(self) -> None:
        def close() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()

        self._loop.call_soon_threadsafe(close)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

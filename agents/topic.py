"""What an assist call is about: one topic from a list the support team edits.

The topic file is a JSON list; each topic has a `name` (the id sent to the
overlay), a display `label`, a `description` and `examples` of things said
on such calls. The bundled `assist_data/topics.json` has ten for a generic
telecom and e-commerce desk.

`TopicDetector` (one per call) embeds the recent talk, both sides, the last
`window_finals` finals cut to `window_words` words, and compares it with each
topic's prototype: the normalised mean of the unit embeddings of its
description and examples. The agent's words count too: "let me check for an
outage in your area" says as much about the call as the customer's "it's
down again". Two rules keep the overlay calm:
* hysteresis: the topic changes only when another one beats the current one
  by `switch_margin` on the same window, so near-ties do not flicker;
* an update is produced only when the topic is first named or changes.
A confidence floor keeps it from guessing: when the chosen topic matches the
window below `floor`, the update says the topic is unclear (`state`
"unclear", no topic named) instead; it is sent once, when the call becomes
unclear, and a topic is named again as soon as one clears the floor. The
floor applies to the embedding choice only (an LLM's pick has no score).

`LlmTopic` asks an LLM instead, for servers with a capable one (vLLM with
Mistral): one short completion that must name a topic from the list. When
its reply is not a topic name, or it fails or times out, the embedding
choice stands.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from earshot.agents.assist_files import AssistFileError, Embed, list_field, read_entries, text_field
from earshot.models.llm import ChatMessage, LlmBackend, LlmError
from earshot.server.protocol import TopicUpdate, r3

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent / "assist_data" / "topics.json"
CANDIDATES = 3
UNCLEAR_LABEL = "Topic unclear"


class TopicError(AssistFileError):
    """The topic file is missing or malformed."""


@dataclass(frozen=True)
class Topic:
    name: str
    label: str
    description: str
    examples: tuple[str, ...]


class TopicList:
    """The topics of one file and their prototypes; shared by every call (read-only once embedded)."""

    def __init__(self, topics: tuple[Topic, ...], path: Path) -> None:
        self.topics = topics
        self.path = path
        self._prototypes: Optional[np.ndarray] = None  # (topics, dim), unit rows

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "TopicList":
        """Read and check `path` (None = the bundled file); TopicError says what is wrong where."""
        path = path or DEFAULT_PATH
        topics = []
        seen: set[str] = set()
        for index, raw in enumerate(read_entries(path, TopicError)):
            topic = Topic(
                name=text_field(path, index, raw, "name", TopicError),
                label=text_field(path, index, raw, "label", TopicError),
                description=text_field(path, index, raw, "description", TopicError),
                examples=list_field(path, index, raw, "examples", TopicError, required=False),
            )
            if topic.name in seen:
                raise TopicError(f"{path}: entry {index + 1}: name {topic.name!r} is used twice")
            seen.add(topic.name)
            topics.append(topic)
        return cls(tuple(topics), path)

    @property
    def embedded(self) -> bool:
        return self._prototypes is not None

    async def embed(self, embed: Embed) -> None:
        """Compute every topic's prototype once; later calls do nothing."""
        if self._prototypes is not None:
            return
        texts = [text for topic in self.topics for text in (topic.description, *topic.examples)]
        rows = np.asarray(await embed(texts), dtype=np.float32)
        if rows.shape[0] != len(texts):
            raise ValueError(f"embed returned {rows.shape[0]} rows for {len(texts)} texts")
        prototypes = []
        start = 0
        for topic in self.topics:
            count = 1 + len(topic.examples)
            mean = rows[start : start + count].mean(axis=0)
            prototypes.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
            start += count
        self._prototypes = np.stack(prototypes)

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of a unit vector to each topic, in list order."""
        if self._prototypes is None:
            raise RuntimeError("TopicList.similarities before embed(): embed the topics first")
        return self._prototypes @ np.asarray(vector, dtype=np.float32).reshape(-1)

    def index_of(self, name: str) -> int:
        for i, topic in enumerate(self.topics):
            if topic.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True)
class TopicConfig:
    window_finals: int = 6
    window_words: int = 60
    switch_margin: float = 0.05
    floor: float = 0.0  # a chosen topic scoring below this is not named: "topic unclear" (0 = always name one)


class TopicDetector:
    """One per call: the recent talk in, a `TopicUpdate` out when the topic is named or changes."""

    def __init__(
        self, topics: TopicList, llm_topic: Optional["LlmTopic"] = None, config: TopicConfig = TopicConfig()
    ) -> None:
        self.topics = topics
        self.llm_topic = llm_topic
        self.config = config
        self._window: deque[tuple[str, str]] = deque(maxlen=config.window_finals)  # (speaker, text)
        self.current: Optional[TopicUpdate] = None

    @property
    def named(self) -> Optional[str]:
        """The topic now shown, or None (not yet judged, or unclear)."""
        current = self.current
        return current.topic if current is not None and current.state == "named" else None

    def add_final(self, speaker: str, text: str) -> None:
        if text.strip():
            self._window.append((speaker, text.strip()))

    def window(self) -> list[tuple[str, str]]:
        """The recent finals, newest last, cut to about `window_words` words (whole finals, at least one)."""
        kept: list[tuple[str, str]] = []
        words = 0
        for speaker, text in reversed(self._window):
            n = len(text.split())
            if kept and words + n > self.config.window_words:
                break
            kept.append((speaker, text))
            words += n
        return kept[::-1]

    async def update(self, embed: Embed) -> Optional[TopicUpdate]:
        """Judge the current window; the new topic when it is first named or changes, else None."""
        window = self.window()
        if not window:
            return None
        await self.topics.embed(embed)
        vector = (await embed([" ".join(text for _, text in window)]))[0]
        scores = self.topics.similarities(vector)
        order = np.argsort(-scores, kind="stable")
        candidates = [{"name": self.topics.topics[i].name, "score": r3(scores[i])} for i in order[:CANDIDATES]]
        chosen, source = int(order[0]), "embedding"
        if self.named is not None:
            current = self.topics.index_of(self.named)
            if scores[chosen] < scores[current] + self.config.switch_margin and scores[current] >= self.config.floor:
                chosen = current  # not clearly better (and the current one still clears the floor): stay
        if self.llm_topic is not None:
            named = await self.llm_topic.pick(window)
            if named is not None:
                chosen, source = self.topics.index_of(named), "llm"
        if source == "embedding" and scores[chosen] < self.config.floor:  # the best one (see above) is below too
            if self.current is not None and self.current.state == "unclear":
                return None
            self.current = TopicUpdate(
                topic="", label=UNCLEAR_LABEL, score=r3(scores[order[0]]), source=source, candidates=candidates,
                state="unclear",
            )
            return self.current
        topic = self.topics.topics[chosen]
        if self.named == topic.name:
            return None
        self.current = TopicUpdate(
            topic=topic.name, label=topic.label, score=r3(scores[chosen]), source=source, candidates=candidates
        )
        return self.current


# --- LLM ------------------------------------------------------------------------------

LLM_SYSTEM_PROMPT = (
    "You label customer-service phone calls. Given the topics and the call so far, "
    "answer with the name of the one topic that fits best, exactly as written, and nothing else."
)


class LlmTopic:
    """Names the call's topic with an LLM: one short completion, parsed against the topic names."""

    def __init__(self, llm: LlmBackend, topics: TopicList, timeout_s: float = 3.0, max_tokens: int = 16) -> None:
        self.llm = llm
        self.topics = topics
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens

    def messages(self, window: list[tuple[str, str]]) -> list[ChatMessage]:
        topic_lines = "\n".join(f"- {t.name}: {t.label}. {t.description}" for t in self.topics.topics)
        call_lines = "\n".join(f"{speaker.capitalize()}: {text}" for speaker, text in window)
        return [
            ChatMessage("system", LLM_SYSTEM_PROMPT),
            ChatMessage("user", f"Topics:\n{topic_lines}\n\nCall so far:\n{call_lines}\n\nTopic name:"),
        ]

    async def pick(self, window: list[tuple[str, str]]) -> Optional[str]:
        """A topic name from the list, or None when the LLM fails, times out or names none (or several)."""
        try:
            reply = await asyncio.wait_for(self._ask(window), self.timeout_s)
        except (LlmError, asyncio.TimeoutError) as exc:
            log.info("LLM topic: no answer (%s); the embedding topic stands", type(exc).__name__)
            return None
        name = self.parse(reply)
        if name is None:
            log.debug("LLM topic: %r names no single topic", reply[:80])  # call text: never at INFO
        return name

    async def _ask(self, window: list[tuple[str, str]]) -> str:
        reply = ""
        stream = self.llm.stream_chat(self.messages(window), max_tokens=self.max_tokens, temperature=0.0)
        async with aclosing(stream) as deltas:
            async for delta in deltas:
                reply += delta
                if "\n" in reply.strip():
                    break  # one line is the answer
        return reply

    def parse(self, reply: str) -> Optional[str]:
        """The one topic the reply names, by name ("billing_payments", "billing payments") or label."""
        said = _folded(reply)
        named = {
            topic.name
            for topic in self.topics.topics
            if re.search(rf"\b{re.escape(_folded(topic.name))}\b", said)
            or re.search(rf"\b{re.escape(_folded(topic.label))}\b", said)
        }
        return named.pop() if len(named) == 1 else None


def _folded(text: str) -> str:
    """Lower case, '&' as 'and', anything else not a letter or digit as one space."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower().replace("&", " and ")).split())

"""What the assist tests share: the real bundled MiniLM, the bundled topics and knowledge, and a scripted LLM.

Test modules import the fixtures by name (`from tests.assist_fixtures import ...`);
each module loads the encoder once.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Optional, Sequence

import numpy as np
import pytest

from earshot.agents.knowledge import KnowledgeBase
from earshot.agents.topic import TopicList
from earshot.models.encoder import SentenceEncoder


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.load()


@pytest.fixture(scope="module")
def embed(encoder):
    async def embed(texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(encoder.encode, list(texts))  # as the server does: off the loop

    return embed


@pytest.fixture(scope="module")
def topics(embed) -> TopicList:
    topic_list = TopicList.load()
    asyncio.run(topic_list.embed(embed))
    return topic_list


@pytest.fixture(scope="module")
def knowledge(embed) -> KnowledgeBase:
    base = KnowledgeBase.load()
    asyncio.run(base.embed(embed))
    return base


class FakeLlm:
    """Replies with canned text in small deltas, or fails, or waits for `gate`; records prompts and stops.

    A stand-in for the LLM where a test needs a failure or an exact reply on
    demand; the real backends are tested in test_llm.py.
    """

    name = "fake"
    capable = True

    def __init__(self, reply: str = "", fail: Optional[Exception] = None) -> None:
        self.reply = reply
        self.fail = fail
        self.gate: Optional[asyncio.Event] = None  # when set: the first call waits for it
        self.prompts: list[str] = []
        self.stopped = 0  # generations closed before the end (cancelled or abandoned)

    async def stream_chat(self, messages, *, max_tokens: int, temperature: float = 0.3, stop=()) -> AsyncIterator[str]:
        self.prompts.append(messages[-1].content)
        gate, self.gate = self.gate, None
        finished = False
        try:
            if gate is not None:
                await gate.wait()
            if self.fail is not None:
                raise self.fail
            for i in range(0, len(self.reply), 5):
                await asyncio.sleep(0)
                yield self.reply[i : i + 5]
            finished = True
        finally:
            if not finished:
                self.stopped += 1

    async def close(self) -> None:
        pass

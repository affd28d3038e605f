"""The agent-assist overlay on a live call: both sides' events in, assist updates out.

    agent track    -> SessionPipeline(speaker="agent")    \\
                                                           --> SessionAssist --> AssistAgent
    customer track -> SessionPipeline(speaker="customer") /       (metrics, sentiment, topic,
                                                                    suggested reply) --> events

`AssistServices` is what every assist call shares (the knowledge file, the
topic list, the encoder, the LLM); one `SessionAssist` exists per connected
call. When the call ends its summary is stored in Redis; the DELETE that ends
the call answers with where to read it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from agents.assist import AssistAgent, AssistConfig
from agents.knowledge import KnowledgeBase, KnowledgeError
from agents.topic import LlmTopic, TopicDetector, TopicError, TopicList
from models.llm import LlmBackend
from server import events
from server.encoder_service import EncoderService
from server.errors import StartupError
from server.intents import FinalsWithIntents
from server.settings import Settings
from server.store import SessionRecord, SessionStore, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass
class AssistServices:
    settings: Settings
    store: SessionStore
    encoders: EncoderService
    knowledge: KnowledgeBase
    topics: TopicList
    llm: Optional[LlmBackend]  # words suggestions (and names topics when capable); None = canned answers only

    @classmethod
    def load(
        cls, settings: Settings, store: SessionStore, encoders: EncoderService, llm: Optional[LlmBackend]
    ) -> "AssistServices":
        """Read the knowledge and topic files; a bad file stops the start with its path and problem."""
        try:
            knowledge = KnowledgeBase.load(Path(settings.assist_knowledge) if settings.assist_knowledge else None)
            topics = TopicList.load(Path(settings.assist_topics) if settings.assist_topics else None)
        except (KnowledgeError, TopicError) as exc:
            raise StartupError(str(exc)) from None
        return cls(settings, store, encoders, knowledge, topics, llm if settings.assist_suggest_llm else None)

    async def warm(self) -> None:
        """Embed the knowledge entries and topics once, before the first call."""
        await self.knowledge.embed(self.encoders.encode)
        await self.topics.embed(self.encoders.encode)

    def config(self) -> AssistConfig:
        return AssistConfig(long_silence_s=self.settings.long_silence_s)

    def topic_llm(self) -> Optional[LlmTopic]:
        mode = self.settings.assist_topic_llm
        if self.llm is None or mode == "off" or (mode == "auto" and not self.llm.capable):
            return None
        return LlmTopic(self.llm, self.topics)


class SessionAssist:
    """One assist call: maps pipeline events to the agent, and its updates to events."""

    def __init__(
        self,
        services: AssistServices,
        record: SessionRecord,
        send: Callable[[events.Event], None],
        audio_clock: Callable[[], float],
        intents_follow_finals: bool,
    ) -> None:
        self.session_id = record.session_id
        self._services = services
        self._send = send
        self._clock = audio_clock
        self._started_at = time.time()
        self._agent = AssistAgent(
            embed=services.encoders.encode,
            knowledge=services.knowledge,
            topics=TopicDetector(services.topics, llm_topic=services.topic_llm()),
            llm=services.llm,
            emit=self._update,
            config=services.config(),
        )
        # Each final waits for its intent (~10 ms) so the agent records both together.
        self._finals = FinalsWithIntents(self._final, intents_follow_finals)

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.SpeechStart):
            self._agent.speech_started(event.speaker, event.utterance_id, event.start_s)
        elif isinstance(event, events.SpeechEnd):
            self._agent.speech_ended(event.speaker, event.utterance_id, event.start_s, event.end_s, event.dropped)
        else:
            self._finals.on_event(event)

    def _final(self, final: events.Final, intents: tuple[events.IntentLabel, ...]) -> None:
        self._agent.final(
            final.speaker,
            final.utterance_id,
            final.seq,
            final.text,
            final.start,
            final.end,
            len(final.words) or len(final.text.split()),
            [(label.name, label.score) for label in intents],
        )

    def _update(self, update: Any) -> None:
        self._send(events.AssistUpdate(self.session_id, update, round(self._clock(), 3)))

    def summary(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "started_at": round(self._started_at, 3),
            **self._agent.summary(round(self._clock(), 3)),
        }

    async def close(self) -> None:
        """Stop the agent's work in flight and store the summary."""
        await self._agent.close()
        try:
            await self._services.store.save_summary(self.session_id, self.summary())
        except StoreUnavailable as exc:
            log.warning("session %s: summary not stored: %s", self.session_id, exc)

"""The assist mode: the agent-assist overlay on a live call, both sides' events in, assist updates out.

    agent track    -> TrackPipeline(speaker="agent")    \\
                                                         --> AssistMode --> AssistAgent (agents/assist_agent.py)
    customer track -> TrackPipeline(speaker="customer") /       (metrics, sentiment, topic,
                                                                  suggested reply) --> assist updates

`AssistServices` is what every assist call shares (the knowledge file, the
topic list, the encoder, the LLM); one `AssistMode` exists per connected call.
When the call ends its summary is stored in Redis; the DELETE that ends the
call answers with where to read it. While the call is live the summary is also
stored every `SUMMARY_CHECKPOINT_S` when a final came since: an instance that
dies without closing its calls leaves that for the analytics worker
(server/abandoned_calls.py). A call that resumes (a dropped connection, a
draining or dead instance) starts its agent from that stored summary
(agents/assist_resume.py), holding the new connection's events until it is
read, so the summary and the call's facts cover the whole call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from aiortc import MediaStreamTrack

from earshot.agents.assist_agent import AssistAgent
from earshot.agents.assist_resume import EarlierPart
from earshot.agents.knowledge import KnowledgeBase, KnowledgeError
from earshot.agents.topic import LlmTopic, TopicDetector, TopicError, TopicList
from earshot.models.llm import LlmBackend
from earshot.server import protocol
from earshot.server.at_rest import SealError
from earshot.server.configs import assist_config, topic_config
from earshot.server.encoder_service import EncoderService
from earshot.server.errors import StartupError
from earshot.server.intent_stage import FinalsWithIntents
from earshot.server.modes.base import CallContext
from earshot.server.settings import Settings
from earshot.server.store import SessionStore, StoreUnavailable

log = logging.getLogger(__name__)

# A live call's summary is stored this often, when a final came since: one sealed SET of a few KB.
# It is what an instance killed mid-call leaves to analyse; at most this much of the call is missing from it.
SUMMARY_CHECKPOINT_S = 5.0


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

    def open(self, context: CallContext) -> "AssistMode":
        return AssistMode(self, context)

    async def warm(self) -> None:
        """Embed the knowledge entries and topics once, before the first call."""
        await self.knowledge.embed(self.encoders.encode)
        await self.topics.embed(self.encoders.encode)

    def topic_llm(self) -> Optional[LlmTopic]:
        mode = self.settings.assist_topic_llm
        if self.llm is None or mode == "off" or (mode == "auto" and not self.llm.capable):
            return None
        return LlmTopic(self.llm, self.topics)


class AssistMode:
    """One assist call: maps the call's events to the agent, and its updates to events."""

    outbound_track: Optional[MediaStreamTrack] = None

    def __init__(self, services: AssistServices, context: CallContext) -> None:
        self.session_id = context.session_id
        self._services = services
        self._context = context
        self._started_at = time.time()
        self._agent = AssistAgent(
            embed=services.encoders.encode,
            knowledge=services.knowledge,
            topics=TopicDetector(
                services.topics, llm_topic=services.topic_llm(), config=topic_config(services.settings)
            ),
            llm=services.llm,
            emit=self._update,
            config=assist_config(services.settings),
        )
        # Each final waits for its intent (~10 ms) so the agent records both together.
        self._finals = FinalsWithIntents(self._final, context.intents_follow_finals)
        self._finals_seen = 0
        self._closing = asyncio.Event()
        self._checkpoints: Optional[asyncio.Task] = None
        # A resumed call (its session already got audio): events wait here until the earlier part is read.
        self._held: Optional[list[protocol.Event]] = None
        self._resuming: Optional[asyncio.Task] = None
        if context.record.audio_s > 0:
            self._held = []
            self._resuming = asyncio.ensure_future(self._resume())

    # --- CallMode -------------------------------------------------------------------------
    def start(self) -> None:
        # The agent acts on the call's speech; nothing to say before it. Its summary is checkpointed from now on.
        if self._checkpoints is None:
            self._checkpoints = asyncio.ensure_future(self._checkpoint_summary())

    def on_event(self, event: protocol.Event) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        if isinstance(event, protocol.SpeechStart):
            self._agent.speech_started(event.speaker, event.utterance_id, event.start_s)
        elif isinstance(event, protocol.SpeechEnd):
            self._agent.speech_ended(event.speaker, event.utterance_id, event.start_s, event.end_s, event.dropped)
        else:
            self._finals.on_event(event)

    async def close(self) -> None:
        """Stop the agent's work in flight and store the summary."""
        self._closing.set()
        if self._resuming is not None:
            await self._resuming  # the held events reach the agent before it stops
        if self._checkpoints is not None:
            await self._checkpoints  # a checkpoint being stored lands before the last summary, not after
        await self._agent.close()
        try:
            await self._services.store.save_summary(self.session_id, self.summary())
        except StoreUnavailable as exc:
            log.warning("session %s: summary not stored: %s", self.session_id, exc)

    async def _resume(self) -> None:
        """The agent starts from the summary the call's earlier connection stored, then hears the held events."""
        try:
            stored = await self._services.store.summary(self.session_id)
            if stored is not None:
                earlier = EarlierPart.from_summary(stored)
                self._agent.resume_from(earlier)
                self._started_at = earlier.started_at
        except (StoreUnavailable, SealError, ValueError) as exc:  # ValueError: not JSON, or a ResumeError
            # Redis away, a summary its keys cannot open or that is not a call's: the summary covers the call from here on.
            log.warning("session %s: resumed without its earlier part: %s", self.session_id, exc)
        finally:
            held, self._held = self._held or [], None
            for event in held:
                self.on_event(event)

    # --- the call's summary ---------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The summary so far: what GET /api/sessions/{id}/summary shows while the call runs."""
        return {
            "session_id": self.session_id,
            "started_at": round(self._started_at, 3),
            **self._agent.summary(self._context.now()),
        }

    async def _checkpoint_summary(self) -> None:
        """Until the call closes: every SUMMARY_CHECKPOINT_S, the summary stored if a final came since."""
        stored = 0
        while True:
            try:
                await asyncio.wait_for(self._closing.wait(), SUMMARY_CHECKPOINT_S)
                return
            except asyncio.TimeoutError:
                pass
            if self._finals_seen == stored:
                continue
            stored = self._finals_seen
            try:
                await self._services.store.save_summary(self.session_id, self.summary())
            except Exception as exc:  # noqa: BLE001 - Redis away or full: the next checkpoint (or the close) tries again
                log.warning("session %s: summary checkpoint not stored: %s", self.session_id, exc)

    def _final(self, final: protocol.Final, intents: tuple[protocol.IntentLabel, ...]) -> None:
        self._finals_seen += 1
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

    def _update(self, update: protocol.AssistPayload) -> None:
        self._context.publish(protocol.AssistUpdate(self.session_id, update, self._context.now()))

"""The agent-assist overlay's brain: one `AssistAgent` per call, both sides' speech in, live updates out.

The server calls it from the event loop with each side's speech starts and
ends and each final with its intent labels. The calls return at once; what
needs the encoder or the LLM runs in tasks. Updates go out through `emit`
(their records are the assist payloads of server/protocol.py):

* every final: `CallMetricsUpdate` (agents/call_metrics.py);
* a customer final: `SentimentUpdate` (agents/sentiment.py), computed inline
  (VADER takes ~0.1 ms), then a suggested reply for the agent:
  1. at once, the best knowledge entry's answer (`source="knowledge"`): one
     encode of the customer's words and a dot product, typically well under
     50 ms, so the agent has something to say while the customer is still
     finishing the thought;
     When that entry matches below `suggestion_floor`, no suggestion: the
     update says it was withheld (`withheld`, no text) and no LLM is asked;
  2. when an LLM is set, its rewording grounded on the best entries, checked
     by agents/suggestion.py; when it fails the check, errs or times out, the
     knowledge answer again, now `final`. A newer customer final cancels the
     LLM stage still in flight (its words are stale), never the knowledge stage;
* any final: the topic is re-judged on the recent talk of both sides
  (agents/topic.py) and a `TopicUpdate` goes out when it is named or changes.
  One topic judgement runs at a time; finals that arrive meanwhile are folded
  into the next one, which reads the newest window.

Agent-side finals update the metrics and the topic only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Coroutine, Optional

from earshot.agents.assist_files import Embed
from earshot.agents.assist_resume import CallLine, EarlierPart
from earshot.agents.call_metrics import CallMetrics, CallMetricsConfig
from earshot.agents.knowledge import KnowledgeBase, KnowledgeHit
from earshot.agents.sentiment import SentimentConfig, SentimentTracker
from earshot.agents.suggestion import check_suggestion, clean_suggestion, first_line, suggestion_messages
from earshot.agents.topic import TopicDetector
from earshot.models.llm import LlmBackend, LlmError
from earshot.server.protocol import SPEAKERS, AssistPayload, SentimentUpdate, SuggestionUpdate, r3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssistConfig:
    long_silence_s: float = 3.0
    sentiment_window: int = 5  # customer utterances the sentiment trend looks at
    knowledge_for_llm: int = 2  # best entries the LLM may draw on
    # A customer final this short ("yes it is", "no still nothing") says too
    # little to search with on its own; their previous final goes with it.
    short_query_words: int = 6
    suggestion_max_tokens: int = 48  # one or two sentences
    suggestion_temperature: float = 0.2
    suggestion_timeout_s: float = 4.0  # the whole LLM reply; the knowledge answer stands after that
    suggestion_floor: float = 0.0  # best entry's score below this: the suggestion is withheld (0 = always one)


class AssistAgent:
    def __init__(
        self,
        *,
        embed: Embed,
        knowledge: KnowledgeBase,
        topics: TopicDetector,
        llm: Optional[LlmBackend],
        emit: Callable[[AssistPayload], None],
        config: AssistConfig = AssistConfig(),
    ) -> None:
        self._embed = embed
        self._knowledge = knowledge
        self._topics = topics
        self._llm = llm
        self._emit_update = emit
        self.config = config
        self._metrics = CallMetrics(CallMetricsConfig(long_silence_s=config.long_silence_s))
        self._sentiment = SentimentTracker(SentimentConfig(window=config.sentiment_window))
        self._lines: list[CallLine] = []
        self._sentiments: list[dict[str, Any]] = []
        self._last_sentiment: Optional[SentimentUpdate] = None
        self._suggestions: list[dict[str, Any]] = []
        self._topic_history: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._suggestion_generation = 0  # bumped by each customer final; older stages see they are stale
        self._llm_task: Optional[asyncio.Task] = None
        self._topic_wanted = asyncio.Event()
        self._topic_task: Optional[asyncio.Task] = None
        self._topic_busy = False
        self._closed = False

    # --- what the server calls --------------------------------------------------------

    def speech_started(self, speaker: str, utterance_id: int, start_s: float) -> None:
        if self._known(speaker):
            self._metrics.speech_started(speaker, start_s)

    def speech_ended(self, speaker: str, utterance_id: int, start_s: float, end_s: float, dropped: bool) -> None:
        if self._known(speaker):
            self._metrics.speech_ended(speaker, start_s, end_s, dropped)

    def final(
        self,
        speaker: str,
        utterance_id: int,
        seq: int,
        text: str,
        start_s: float,
        end_s: float,
        word_count: int,
        intents: list[tuple[str, float]],
    ) -> None:
        received = time.monotonic()
        if self._closed or not self._known(speaker):
            return
        self._lines.append(CallLine(seq, speaker, utterance_id, text, start_s, end_s, tuple(intents)))
        self._metrics.final(speaker, start_s, end_s, word_count)
        self._emit(self._metrics.snapshot(self._metrics.latest_s))
        if not text.strip():
            return
        if speaker == "customer":
            sentiment = self._sentiment.add(speaker, utterance_id, text)
            self._last_sentiment = sentiment
            self._sentiments.append(
                {"seq": seq, "utterance_id": utterance_id, "score": sentiment.score, "label": sentiment.label}
            )
            self._emit(sentiment)
            self._start_suggestion(utterance_id, text, received)
        self._topics.add_final(speaker, text)
        self._want_topic()

    def resume_from(self, earlier: EarlierPart) -> None:
        """Before any event of a resumed call: its earlier part (agents/assist_resume.py); nothing is emitted."""
        self._metrics.restore(earlier.spans, [(ln.speaker, ln.start, ln.end, len(ln.text.split())) for ln in earlier.lines])
        self._lines.extend(earlier.lines)
        for line in (line for line in earlier.lines if line.text.strip()):
            if line.speaker == "customer":  # the trend's window fills again (VADER gives the same scores)
                self._last_sentiment = self._sentiment.add(line.speaker, line.utterance_id, line.text)
            self._topics.add_final(line.speaker, line.text)
        self._sentiments.extend(earlier.sentiments)
        self._suggestions.extend(earlier.suggestions)
        self._topic_history.extend(earlier.topic_history)
        self._topics.current = earlier.topic

    async def close(self) -> None:
        """Cancel the work in flight; no update is emitted after this returns."""
        self._closed = True
        tasks = [task for task in (*self._tasks, self._topic_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Until no suggestion or topic work is in flight (for a replay of finals one after another)."""
        while self._tasks or self._topic_wanted.is_set() or self._topic_busy:
            await asyncio.sleep(0.002)

    def summary(self, now_s: float) -> dict[str, Any]:
        """The call so far, JSON-ready: what was said, intents, topic, sentiment, metrics, suggestions."""
        lines = sorted(self._lines, key=lambda line: line.seq)
        counts: Counter = Counter()
        by_speaker: dict[str, Counter] = {speaker: Counter() for speaker in SPEAKERS}
        for line in lines:
            for name, _ in line.intents:
                counts[name] += 1
                by_speaker[line.speaker][name] += 1
        scores = [s["score"] for s in self._sentiments]
        last = self._last_sentiment
        current_topic = self._topics.current
        metrics = asdict(self._metrics.snapshot(now_s))
        return {
            "transcript": [line.to_dict() for line in lines],
            "intents": {
                "counts": dict(counts.most_common()),
                "by_speaker": {speaker: dict(c.most_common()) for speaker, c in by_speaker.items()},
                "per_utterance": [
                    {"seq": line.seq, "speaker": line.speaker, "utterance_id": line.utterance_id,
                     "labels": [name for name, _ in line.intents]}
                    for line in lines
                ],
            },
            "topic": asdict(current_topic) if current_topic is not None else None,
            "topic_history": list(self._topic_history),
            "sentiment": {
                "scores": list(self._sentiments),
                "mean": r3(sum(scores) / len(scores)) if scores else None,
                "trend": last.trend if last is not None else 0.0,
                "trend_label": last.trend_label if last is not None else "steady",
            },
            "metrics": metrics,
            "speech_spans": self._metrics.spans(),  # what a resumed call's metrics start from
            "suggestions": list(self._suggestions),
            # Customer lines whose best knowledge entry was under the floor: no suggestion was shown.
            "suggestions_withheld": sum(1 for s in self._suggestions if s["withheld"]),
            "confidence_floor": {"topic": self._topics.config.floor, "suggestion": self.config.suggestion_floor},
        }

    # --- suggestions ------------------------------------------------------------------

    def _start_suggestion(self, utterance_id: int, text: str, received: float) -> None:
        self._suggestion_generation += 1
        if self._llm_task is not None:
            self._llm_task.cancel()  # its customer words are no longer the latest
            self._llm_task = None
        self._spawn(self._suggest(self._suggestion_generation, utterance_id, text, received))

    async def _suggest(self, generation: int, utterance_id: int, text: str, received: float) -> None:
        await self._knowledge.embed(self._embed)  # at once when the server warmed it
        query = (await self._embed([self._query_text(text)]))[0]
        hits = self._knowledge.search(query, k=max(self.config.knowledge_for_llm, 1), topic=self._topics.named)
        if hits[0].score < self.config.suggestion_floor:
            self._emit_suggestion(utterance_id, "", "none", [], True, received, withheld_score=hits[0].score)
            return
        refine = self._llm is not None and generation == self._suggestion_generation and not self._closed
        self._emit_suggestion(utterance_id, hits[0].entry.answer, "knowledge", hits[:1], not refine, received)
        if refine:
            self._llm_task = self._spawn(self._refine(utterance_id, text, hits, received))

    async def _refine(self, utterance_id: int, text: str, hits: list[KnowledgeHit], received: float) -> None:
        assert self._llm is not None
        this = ("customer", utterance_id)
        earlier = [(line.speaker, line.text) for line in self._lines if (line.speaker, line.utterance_id) != this]
        grounding = " ".join([*(hit.entry.answer for hit in hits), *(t for _, t in earlier), text])
        try:
            messages = suggestion_messages(text, earlier, hits)
            assert self._llm is not None
            reply_line = first_line(self._llm, messages, self.config.suggestion_max_tokens, self.config.suggestion_temperature)
            raw = await asyncio.wait_for(reply_line, self.config.suggestion_timeout_s)
            reply = clean_suggestion(raw)
            verdict = check_suggestion(reply, grounding)
            reason = verdict.reason
        except (LlmError, asyncio.TimeoutError) as exc:
            reply, reason = "", f"{type(exc).__name__}: {exc}"
        if not reason:
            self._emit_suggestion(utterance_id, reply, "llm", hits, True, received)
            return
        log.info("utterance %d: LLM suggestion not used (%s); the knowledge answer stands", utterance_id, reason)
        self._emit_suggestion(utterance_id, hits[0].entry.answer, "knowledge", hits[:1], True, received)

    def _query_text(self, text: str) -> str:
        if len(text.split()) >= self.config.short_query_words:
            return text
        customer = [line.text for line in self._lines if line.speaker == "customer" and line.text.strip()]
        return " ".join(customer[-2:])  # this final is the last of them

    def _emit_suggestion(
        self, utterance_id: int, text: str, source: str, hits: list[KnowledgeHit], final: bool, received: float,
        withheld_score: Optional[float] = None,  # set: no suggestion, the best entry scored this (under the floor)
    ) -> None:
        update = SuggestionUpdate(
            utterance_id=utterance_id,
            text=text,
            source=source,
            knowledge_ids=[hit.entry.id for hit in hits],
            score=hits[0].score if withheld_score is None else withheld_score,
            final=final,
            latency_s=r3(time.monotonic() - received),
            withheld=withheld_score is not None,
        )
        self._suggestions.append(asdict(update))
        self._emit(update)

    # --- topic --------------------------------------------------------------------------

    def _want_topic(self) -> None:
        self._topic_wanted.set()
        if self._topic_task is None:
            self._topic_task = asyncio.ensure_future(self._topic_loop())

    async def _topic_loop(self) -> None:
        while True:
            await self._topic_wanted.wait()
            self._topic_wanted.clear()
            self._topic_busy = True
            try:
                update = await self._topics.update(self._embed)
            except Exception:  # noqa: BLE001 - the call goes on without a new topic
                log.exception("topic update failed")
                continue
            finally:
                self._topic_busy = False
            if update is not None:
                self._topic_history.append({**asdict(update), "at_s": r3(self._metrics.latest_s)})
                self._emit(update)

    # --- plumbing -----------------------------------------------------------------------

    def _known(self, speaker: str) -> bool:
        if speaker in SPEAKERS:
            return True
        log.warning("assist: ignoring an event from unknown speaker %r", speaker)
        return False

    def _emit(self, update: AssistPayload) -> None:
        if not self._closed:
            self._emit_update(update)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._llm_task is task:
            self._llm_task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("assist task failed", exc_info=task.exception())

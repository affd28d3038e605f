"""Intent classification on a live stream: finals (and, when asked, stable partials) in, `intent` events out.

    TrackPipeline --final/partial text--> IntentStage (queue) --> Classify (encoder thread) --> intent event

The stage never holds up transcription: the pipeline hands it text and goes on;
one task per stream classifies in arrival order, so a stream's intents come in
the order of its utterances. A partial waiting in the queue is replaced by a
newer one of the same utterance (only the latest words matter), and a final
never waits behind a partial of its own utterance. Any failure of the
classifier becomes an `error` event with code `intent_failed`; the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from earshot.models.intent import IntentPrediction
from earshot.server import protocol

log = logging.getLogger(__name__)

Classify = Callable[[str, str], Awaitable[IntentPrediction]]
Publish = Callable[[protocol.Event], None]

CLASSIFY_TIMEOUT_S = 2.0  # far above the ~10 ms it takes; a stuck classifier must not pile up work
MIN_PARTIAL_WORDS = 3  # fewer settled words say too little to classify
CLOSE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class IntentOptions:
    """Which label set a call's utterances are classified with, and by what."""

    classify: Classify
    label_set: str
    partials: bool = False  # also the settled words of partials


@dataclass(frozen=True)
class _Job:
    utterance_id: int
    text: str
    final: bool
    audio_s: float


class IntentStage:
    def __init__(self, session_id: str, options: IntentOptions, publish: Publish, speaker: str = "") -> None:
        self._session_id = session_id
        self._classify = options.classify
        self.label_set = options.label_set
        self._publish = publish
        self._speaker = speaker
        self._partials = options.partials
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._classified_partial: dict[int, str] = {}  # utterance -> the partial text last classified
        self._task: Optional[asyncio.Task] = None

    def final(self, utterance_id: int, text: str, audio_s: float) -> None:
        # Partials of this utterance still waiting are moot now.
        self._queue = [job for job in self._queue if job.utterance_id != utterance_id]
        self._classified_partial.pop(utterance_id, None)
        self._put(_Job(utterance_id, text, True, audio_s))

    def partial(self, utterance_id: int, committed: str, audio_s: float) -> None:
        """Classify the settled words of an utterance in progress, when asked to and when they grew."""
        if not self._partials or len(committed.split()) < MIN_PARTIAL_WORDS:
            return
        if self._classified_partial.get(utterance_id) == committed:
            return
        self._classified_partial[utterance_id] = committed
        self._queue = [job for job in self._queue if job.final or job.utterance_id != utterance_id]
        self._put(_Job(utterance_id, committed, False, audio_s))

    def _put(self, job: _Job) -> None:
        self._queue.append(job)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Classify what is queued (finals matter to the interviewer and the summary), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            await self._handle(self._queue.pop(0))

    async def _handle(self, job: _Job) -> None:
        if not job.text.strip():
            prediction = IntentPrediction(self.label_set, (), {}, 0.0)
        else:
            try:
                prediction = await asyncio.wait_for(self._classify(job.text, self.label_set), CLASSIFY_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - whatever the classifier did, transcription goes on
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("session %s: intent classification failed: %s", self._session_id, reason)
                self._publish(
                    protocol.Error(
                        self._session_id,
                        code="intent_failed",
                        message="Intent classification failed; transcription goes on.",  # the reason is in the log
                        detail={"utterance_id": job.utterance_id, "final": job.final, "speaker": self._speaker},
                    )
                )
                return
        self._publish(
            protocol.Intent(
                self._session_id,
                utterance_id=job.utterance_id,
                label_set=prediction.label_set,
                final=job.final,
                text=job.text,
                labels=[protocol.IntentLabel(label.name, label.score) for label in prediction.labels],
                scores=prediction.scores,
                inference_s=prediction.inference_s,
                emitted_audio_s=job.audio_s,
                speaker=self._speaker,
            )
        )


class FinalsWithIntents:
    """Pairs each final with its intent, for the agents that act on both.

    The pipeline sends a final to the client at once and its intent ~10 ms
    later. An agent that needs both (the interviewer's commands, the assist
    overlay's per-utterance record) gets the final from here, held until its
    `intent` or `intent_failed` arrives. With classification off, finals pass
    straight through with no labels.
    """

    def __init__(self, deliver: Callable[[protocol.Final, tuple[protocol.IntentLabel, ...]], None], intents_follow: bool) -> None:
        self._deliver = deliver
        self._intents_follow = intents_follow
        self._held: dict[tuple[str, int], protocol.Final] = {}

    def on_event(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Final):
            if self._intents_follow:
                self._held[(event.speaker, event.utterance_id)] = event
            else:
                self._deliver(event, ())
        elif isinstance(event, protocol.Intent) and event.final:
            held = self._held.pop((event.speaker, event.utterance_id), None)
            if held is not None:
                self._deliver(held, tuple(event.labels))
        elif isinstance(event, protocol.Error) and event.code == "intent_failed" and event.detail.get("final"):
            key = (event.detail.get("speaker", ""), event.detail.get("utterance_id", -1))
            held = self._held.pop(key, None)
            if held is not None:
                self._deliver(held, ())

"""The interviewer's voice out: an aiortc audio track that plays queued speech and can be cut off.

aiortc pulls one frame at a time from `recv()` and encodes it to Opus at once,
so whatever `recv()` returns is what the candidate hears ~one network trip
later. That makes barge-in simple and exact: `pause()` and `interrupt()` only
change state, and the very next `recv()` sends silence.

The track never stalls: with nothing to say it sends silence, because a gap
in the RTP stream makes the browser's jitter buffer stretch and then lag.
PCM is cut into 20 ms frames when it is queued, so `recv()`, which runs on
the event loop every 20 ms, only hands out bytes it already has.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from earshot.models.tts import OUTPUT_RATE, SpokenAudio

log = logging.getLogger(__name__)

FRAME_MS = 20
FRAME_SAMPLES = OUTPUT_RATE * FRAME_MS // 1000  # 960
_SILENCE = bytes(FRAME_SAMPLES * 2)
_TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)
# Behind the real-time schedule by more than this (the loop was blocked), restart the
# schedule instead of bursting every missed frame at once into the receiver's jitter buffer.
_MAX_LAG_S = 0.2
_ENDED_MEMORY = 256  # ids of ended utterances remembered, to drop sentences that arrive after a cut


@dataclass(frozen=True)
class PlaybackEnd:
    utterance_id: int
    interrupted: bool
    played_s: float  # audio of this utterance actually sent
    spoken_text: str  # sentences fully or partly sent (partly: at least one frame went out)
    unspoken_text: str  # sentences never started


@dataclass(frozen=True, eq=False)
class _Sentence:
    text: str
    frames: np.ndarray  # int16, one 20 ms frame a row, the last padded with silence
    samples: int  # real samples, without the padding


@dataclass(eq=False)
class _Utterance:
    """Playback state of one utterance: mutable, owned by the track, touched only on the event loop."""

    id: int
    sentences: list[_Sentence] = field(default_factory=list)
    sentence: int = 0  # index of the sentence playing
    frame: int = 0  # next frame of that sentence
    finished: bool = False  # finish_utterance() was called: no more sentences will come
    started: bool = False  # on_start has fired

    @property
    def drained(self) -> bool:
        return self.sentence >= len(self.sentences)

    def take_frame(self) -> bytes:
        current = self.sentences[self.sentence]
        data = current.frames[self.frame].tobytes()  # 1920 bytes: well under a microsecond
        self.frame += 1
        if self.frame >= len(current.frames):
            self.sentence, self.frame = self.sentence + 1, 0
        return data

    def playback_end(self, interrupted: bool) -> PlaybackEnd:
        done = self.sentences[: self.sentence]
        samples = sum(s.samples for s in done)
        spoken = list(done)
        if not self.drained and self.frame > 0:
            current = self.sentences[self.sentence]
            samples += min(self.frame * FRAME_SAMPLES, current.samples)
            spoken.append(current)
        unspoken = self.sentences[len(spoken) :]
        return PlaybackEnd(
            utterance_id=self.id,
            interrupted=interrupted,
            played_s=samples / OUTPUT_RATE,
            spoken_text=" ".join(s.text for s in spoken),
            unspoken_text=" ".join(s.text for s in unspoken),
        )


def split_frames(pcm: np.ndarray) -> np.ndarray:
    """Cut int16 mono PCM into rows of 20 ms frames, padding the last with silence."""
    padding = np.zeros(-len(pcm) % FRAME_SAMPLES, dtype=np.int16)
    return np.concatenate([pcm.astype(np.int16, copy=False), padding]).reshape(-1, FRAME_SAMPLES)


class AgentVoiceTrack(MediaStreamTrack):
    """Outbound audio: queued utterances, played one after another, in real time.

    Utterances play in the order their first sentence was queued; one plays
    to its end (finish_utterance) before the next starts, so sentences of a
    reply still being synthesized are never interleaved with another reply.

    Callbacks are plain functions called on the event loop: on_start(id) as
    the first frame of an utterance is handed to aiortc, on_sentence((id,
    text)) as the first frame of each sentence is, on_end(PlaybackEnd) as its
    last is, or when it is cut. Every utterance the track has been told about
    gets exactly one on_end. on_silenced(id) fires as the first silent frame
    goes out in place of a started utterance after pause() or interrupt():
    the moment the caller stops hearing it (the barge-in stop time's end).
    """

    kind = "audio"

    def __init__(
        self,
        on_start: Optional[Callable[[int], None]] = None,
        on_end: Optional[Callable[[PlaybackEnd], None]] = None,
        on_sentence: Optional[Callable[[tuple[int, str]], None]] = None,
        on_silenced: Optional[Callable[[int], None]] = None,
    ) -> None:
        super().__init__()
        self._on_start = on_start
        self._on_end = on_end
        self._on_sentence = on_sentence
        self._on_silenced = on_silenced
        self._silence_due: Optional[int] = None  # a started utterance that pause()/interrupt() silences on the next frame
        self._queue: deque[_Utterance] = deque()
        self._ended_ids: deque[int] = deque(maxlen=_ENDED_MEMORY)
        self._paused = False
        self._clock_start: Optional[float] = None  # monotonic time of pts 0 on the current schedule
        self._clock_pts = 0  # pts at _clock_start
        self._pts = 0  # pts of the next frame, in samples

    # --- control, from the event loop -------------------------------------------
    def enqueue(self, utterance_id: int, audio: SpokenAudio) -> None:
        """Append one sentence to an utterance (a new id starts a new utterance, queued behind the others).

        A sentence for an utterance that already ended is dropped: after a
        barge-in, syntheses already under way still deliver their audio.
        """
        if audio.sample_rate != OUTPUT_RATE:
            raise ValueError(f"audio at {audio.sample_rate} Hz: the track plays {OUTPUT_RATE} Hz")
        if audio.pcm.ndim != 1 or audio.pcm.dtype != np.int16 or audio.pcm.size == 0:
            raise ValueError("audio must be non-empty mono int16 PCM")
        if utterance_id in self._ended_ids:
            log.debug("utterance %d already ended: dropping %r", utterance_id, audio.text)
            return
        utterance = self._find(utterance_id) or self._open(utterance_id)
        if utterance.finished:
            raise ValueError(f"utterance {utterance_id} was finished: no sentence may follow")
        utterance.sentences.append(_Sentence(audio.text, split_frames(audio.pcm), len(audio.pcm)))

    def finish_utterance(self, utterance_id: int) -> None:
        """No more sentences for this utterance: it ends (on_end) once its last frame is sent.

        An utterance that never got a sentence (every synthesis failed) still
        ends, with nothing played, when its turn comes.
        """
        if utterance_id in self._ended_ids:
            return
        (self._find(utterance_id) or self._open(utterance_id)).finished = True

    def pause(self) -> None:
        """Barge-in duck: silence from the next frame on, keeping the position. No-op when not speaking."""
        if self.speaking:
            if not self._paused and self._queue[0].started:
                self._silence_due = self._queue[0].id
            self._paused = True

    def resume(self) -> None:
        """Carry on from the exact frame where pause() left off."""
        if self._paused:
            self._silence_due = None  # a pause undone before its first silent frame went out silenced nothing
        self._paused = False

    def interrupt(self) -> Optional[PlaybackEnd]:
        """Barge-in confirmed: drop everything queued; from the next frame on, silence.

        Returns how far the utterance at the head of the queue got (None when
        nothing was queued). on_end fires, interrupted, for it and for every
        utterance queued behind it.
        """
        # Cut while audible: the next frame silences it. Cut while paused: that pause's silence already counted.
        if not self._paused and self._queue and self._queue[0].started:
            self._silence_due = self._queue[0].id
        self._paused = False
        cut = [u.playback_end(interrupted=True) for u in self._queue]
        self._ended_ids.extend(u.id for u in self._queue)
        self._queue.clear()
        for end in cut:
            self._fire(self._on_end, end)
        return cut[0] if cut else None

    def stop(self) -> None:
        """End the track (MediaStreamTrack's contract; aiortc calls it when the connection goes).

        What was still playing is cut first, so its owner hears on_end.
        Barge-in is `interrupt()`, not this: a stopped track sends nothing more.
        """
        if self.readyState == "live":
            self.interrupt()
        super().stop()

    @property
    def speaking(self) -> bool:
        """An utterance is queued or playing (paused counts), including one waiting for its next sentence."""
        return bool(self._queue)

    # --- aiortc's side ----------------------------------------------------------
    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._wait_for_frame_time()
        # Decide what to send after the wait, so a pause or cut made meanwhile applies to this frame.
        data, notices = self._next_frame()
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(data)
        frame.sample_rate = OUTPUT_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += FRAME_SAMPLES
        for callback, arg in notices:
            self._fire(callback, arg)
        return frame

    async def _wait_for_frame_time(self) -> None:
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start, self._clock_pts = now, self._pts
            return
        due = self._clock_start + (self._pts - self._clock_pts) / OUTPUT_RATE
        if due - now > 0:
            await asyncio.sleep(due - now)
        elif now - due > _MAX_LAG_S:
            self._clock_start, self._clock_pts = now, self._pts

    def _next_frame(self) -> tuple[bytes, list[tuple[Optional[Callable], object]]]:
        """The next frame's bytes, and the callbacks it triggers, in the order things happened."""
        notices = self._pop_finished()
        if not self._queue:
            self._paused = False  # nothing left to hold back: a pause must not mute the next reply
        if self._paused or not self._queue or self._queue[0].drained:
            if self._silence_due is not None:  # the first frame the caller no longer hears a cut or paused utterance in
                notices.append((self._on_silenced, self._silence_due))
                self._silence_due = None
            return _SILENCE, notices  # paused, idle, or the head waits for its next sentence
        head = self._queue[0]
        if not head.started:
            head.started = True
            notices.append((self._on_start, head.id))
        if head.frame == 0:  # a sentence begins: its words can be shown as they are heard
            notices.append((self._on_sentence, (head.id, head.sentences[head.sentence].text)))
        data = head.take_frame()
        return data, notices + self._pop_finished()

    def _pop_finished(self) -> list[tuple[Optional[Callable], object]]:
        """End the utterances at the head that are finished and fully sent."""
        ended: list[tuple[Optional[Callable], object]] = []
        while self._queue and self._queue[0].finished and self._queue[0].drained:
            utterance = self._queue.popleft()
            self._ended_ids.append(utterance.id)
            ended.append((self._on_end, utterance.playback_end(interrupted=False)))
        return ended

    def _find(self, utterance_id: int) -> Optional[_Utterance]:
        return next((u for u in self._queue if u.id == utterance_id), None)

    def _open(self, utterance_id: int) -> _Utterance:
        utterance = _Utterance(utterance_id)
        self._queue.append(utterance)
        return utterance

    @staticmethod
    def _fire(callback: Optional[Callable], arg: object) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:  # a failing listener must not kill recv(): aiortc's sender would stop for good
            log.exception("agent voice callback %r failed", callback)

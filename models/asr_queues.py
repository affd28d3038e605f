"""The queue the ASR workers take from, which is what keeps latency flat as sessions are added.

`FairQueue` (`scheduling="fair"`, the default):

* finals before partials: a final is what a user waits on at end of speech;
* partials are latest-only per stream: a newer partial request replaces the
  queued one (its caller gets `None`), so a busy engine never works on stale
  audio;
* partials round-robin across streams: the stream served longest ago goes next,
  so no session starves;
* a worker takes up to `max_batch` partials of different streams at once and
  decodes them in one model call.

`FifoQueue` (`scheduling="fifo"`) is the naive baseline the load test compares
against: arrival order, nothing dropped, no batching.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(eq=False)  # jobs are compared by identity: comparing their audio arrays is wrong and costly
class DecodeJob:
    """One decode request, from `AsrEngine.transcribe` to the worker that runs it."""

    stream_id: str
    audio: np.ndarray
    final: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    submitted: float = field(default_factory=time.monotonic)


class _WorkerQueue:
    """What both queues share: the condition the workers wait on, closing, and the depth."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False

    def _waiting(self) -> int:
        raise NotImplementedError

    def _wait_for_work(self) -> bool:
        """With the lock held: block until a job waits; False once closed."""
        while not self._closed and not self._waiting():
            self._cond.wait()
        return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        with self._cond:
            return self._waiting()


class FairQueue(_WorkerQueue):
    """Finals FIFO first, then one partial per stream, least recently served first."""

    def __init__(self) -> None:
        super().__init__()
        self._finals: deque[DecodeJob] = deque()
        self._partials: dict[str, DecodeJob] = {}
        self._last_served: dict[str, int] = {}
        self._turn = itertools.count()

    def _waiting(self) -> int:
        return len(self._finals) + len(self._partials)

    def put(self, job: DecodeJob) -> Optional[DecodeJob]:
        """Queue a job; returns a partial it displaced, whose caller should get None."""
        with self._cond:
            displaced = None
            if job.final:
                self._finals.append(job)
            else:
                displaced = self._partials.pop(job.stream_id, None)
                self._partials[job.stream_id] = job
            self._cond.notify()
            return displaced

    def remove(self, job: DecodeJob) -> bool:
        with self._cond:
            if job.final and job in self._finals:
                self._finals.remove(job)
                return True
            if not job.final and self._partials.get(job.stream_id) is job:
                del self._partials[job.stream_id]
                return True
            return False

    def get(self, max_batch: int = 1) -> list[DecodeJob]:
        """Block until work is ready: one final, or up to `max_batch` partials of different
        streams, least recently served first. Empty once closed."""
        with self._cond:
            if not self._wait_for_work():
                return []
            if self._finals:
                jobs = [self._finals.popleft()]
            else:
                streams = sorted(self._partials, key=lambda s: self._last_served.get(s, -1))[:max_batch]
                jobs = [self._partials.pop(stream_id) for stream_id in streams]
            for job in jobs:
                self._last_served[job.stream_id] = next(self._turn)
            return jobs

    def forget(self, stream_id: str) -> None:
        with self._cond:
            self._last_served.pop(stream_id, None)


class FifoQueue(_WorkerQueue):
    """Arrival order, nothing displaced, finals not promoted: the naive baseline
    (`scheduling="fifo"`), kept so the load test can measure what FairQueue wins."""

    def __init__(self) -> None:
        super().__init__()
        self._jobs: deque[DecodeJob] = deque()

    def _waiting(self) -> int:
        return len(self._jobs)

    def put(self, job: DecodeJob) -> Optional[DecodeJob]:
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
            return None

    def remove(self, job: DecodeJob) -> bool:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
                return True
            return False

    def get(self, max_batch: int = 1) -> list[DecodeJob]:
        with self._cond:
            return [self._jobs.popleft()] if self._wait_for_work() else []

    def forget(self, stream_id: str) -> None:
        pass


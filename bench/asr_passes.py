"""The ASR bench's passes over the corpus: the live pipeline (paced or not) and offline faster-whisper.

Each pass runs its files one after another on an idle engine; `contention`
records how much CPU other processes took meanwhile, since on a small box
they slow every decode.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CorpusFile, progress
from earshot.models.asr import AsrEngine
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from earshot.server import protocol
from earshot.server.settings import Settings
from earshot.server.transcribe_command import transcribe_file


# --- what a pass gives -----------------------------------------------------------------------
@dataclass
class StreamRun:
    """Everything one pass of the live pipeline over one file produced."""

    file: CorpusFile
    wall_s: float
    events: list[protocol.Event] = field(default_factory=list)
    rss_mib_after: float = 0.0

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def finals(self) -> list[protocol.Final]:
        return self.of_type(protocol.Final)

    @property
    def partials(self) -> list[protocol.Partial]:
        return self.of_type(protocol.Partial)

    @property
    def text(self) -> str:
        return " ".join(f.text for f in self.finals)


@dataclass(frozen=True)
class OfflineResult:
    text: str
    wall_s: float


# --- contention and memory ---------------------------------------------------------------
@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy_s: float  # non-idle CPU time of the whole machine, all cores
    own_s: float  # CPU time of this process, all threads


def cpu_snapshot() -> CpuSnapshot:
    busy = 0.0
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass  # not Linux: foreign CPU reads as 0
    times = os.times()
    return CpuSnapshot(time.monotonic(), busy, times.user + times.system)


def contention(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU other processes used meanwhile: on a 2-core box they slow every decode, so timings need it beside them."""
    wall = after.wall - before.wall
    own = after.own_s - before.own_s
    foreign = max(0.0, (after.busy_s - before.busy_s) - own)
    return {
        "wall_s": round(wall, 2),
        "own_cpu_s": round(own, 2),
        "foreign_cpu_s": round(foreign, 2),
        "foreign_share": round(foreign / max(wall * (os.cpu_count() or 1), 1e-9), 3),  # of all cores' capacity
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }


def rss_now_mib() -> float:
    """Resident memory now (not the peak): rising across files would mean a leak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError):
        return float("nan")


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux



# --- passes ------------------------------------------------------------------------------
DRAIN_AUDIO = bytes(SAMPLE_RATE // 10 * BYTES_PER_SAMPLE)  # 0.1 s of silence


async def drain(engine: AsrEngine) -> None:
    """Wait until the engine's worker has finished whatever it was running.

    Closing a stream cancels its queued decodes but not one already running on
    the worker; that one still reports to the loop when it ends. A final goes
    first in the queue and the worker is single-threaded, so once this decode
    comes back the worker is idle: the next file starts on an idle engine, and
    no decode outlives the event loop (AsrEngine's worker thread dies if it
    reports to a closed loop, and every later decode would hang).
    """
    await engine.transcribe("bench-drain", DRAIN_AUDIO, final=True)
    engine.forget_stream("bench-drain")


async def stream_files(engine: AsrEngine, settings: Settings, files: list[CorpusFile], realtime: bool, label: str) -> list[StreamRun]:
    """One stream at a time, as one caller after another would use the server."""
    runs = []
    for index, corpus_file in enumerate(files):
        collected: list[protocol.Event] = []
        started = time.monotonic()
        await transcribe_file(
            corpus_file.path, engine, settings, collected.append, realtime=realtime, session_id=f"bench-{label}-{index}"
        )
        run = StreamRun(corpus_file, time.monotonic() - started, collected)
        runs.append(run)
        await drain(engine)  # untimed: at most one cancelled partial decode is still running
        run.rss_mib_after = rss_now_mib()
        progress(f"{label:9s} {index + 1:2d}/{len(files)} {corpus_file.rel:32s} {corpus_file.seconds:6.2f} s audio, "
                 f"{run.wall_s:6.2f} s wall, {len(run.finals)} finals, {len(run.partials)} partials")
    return runs


@dataclass
class StreamPasses:
    realtime: list[StreamRun]
    fast: list[StreamRun]
    nonspeech: list[StreamRun]
    contention: dict[str, dict[str, float]]
    loop_errors: list[str]  # exceptions nobody awaited (asyncio reports them only to the loop's handler)


def record_loop_errors(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Count what the pipeline's tasks raised unseen, one line each, instead of a traceback in the middle of the run."""
    seen: list[str] = []

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        line = f"{context.get('message')}: {exception!r}" if exception else str(context.get("message"))
        seen.append(line)
        progress(f"  pipeline error: {line}")

    loop.set_exception_handler(handler)
    return seen


async def stream_passes(engine: AsrEngine, settings: Settings, speech: list[CorpusFile], nonspeech: list[CorpusFile]) -> StreamPasses:
    """All live-pipeline passes on one event loop, one after another so none slows another."""
    loop_errors = record_loop_errors(asyncio.get_running_loop())
    before = cpu_snapshot()
    realtime = await stream_files(engine, settings, speech, realtime=True, label="realtime")
    between = cpu_snapshot()
    fast = await stream_files(engine, settings, speech, realtime=False, label="fast")
    after = cpu_snapshot()
    realtime_cpu, fast_cpu = contention(before, between), contention(between, after)
    silent = await stream_files(engine, settings, nonspeech, realtime=False, label="nonspeech")
    gc.collect()  # a failed task is reported when collected: collect while the handler still listens
    return StreamPasses(realtime, fast, silent, {"realtime": realtime_cpu, "fast": fast_cpu}, loop_errors)


def offline_pass(model_dir: Path, files: list[CorpusFile]) -> tuple[dict[str, OfflineResult], float]:
    """faster-whisper's own file transcription with its default options: the accuracy reference."""
    from faster_whisper import WhisperModel

    started = time.monotonic()
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8")
    load_s = time.monotonic() - started
    results = {}
    for index, corpus_file in enumerate(files):
        started = time.monotonic()
        segments, _info = model.transcribe(str(corpus_file.path), language="en")
        text = " ".join(segment.text.strip() for segment in segments)  # segments is lazy: this runs the decode
        results[corpus_file.rel] = OfflineResult(text, time.monotonic() - started)
        progress(f"offline   {index + 1:2d}/{len(files)} {corpus_file.rel:32s} {results[corpus_file.rel].wall_s:6.2f} s wall")
    del model
    return results, load_s

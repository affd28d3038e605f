"""ASR benchmark: streaming vs offline WER, final latency, partial lag, speed, memory.

    python -m bench.run_bench [--model tiny.en] [--out bench/results] [--quick]

Passes, one after another so none disturbs another's timing:

1. realtime  - every speech file through `transcribe_file(realtime=True)`, paced by
               the wall clock as a live caller would be: WER, final latency, partial lag.
2. fast      - the same files with realtime=False (as fast as possible): real-time factor.
3. nonspeech - nonspeech/ files, realtime=False: must yield no final and no partial.
4. offline   - faster-whisper's own `transcribe` (beam 5, 30 s windows) on the same
               model: the WER the streaming pipeline is judged against.

Writes bench/results/asr-<model>.json and .png; see bench/README.md for the fields.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from earshot.loadtest.stats import percentiles
from earshot.models.asr import AsrEngine
from earshot.models.model_files import whisper_model_dir
from earshot.models.text import word_errors
from earshot.server import protocol
from earshot.server.configs import asr_config
from earshot.server.settings import Settings
from earshot.server.settings_sources import settings_from_env
from earshot.server.transcribe_command import transcribe_file

REPO_ROOT = Path(__file__).resolve().parent.parent
# The corpus sits beside the checkout, as it does for the tests; EARSHOT_CORPUS overrides.
DEFAULT_CORPUS = Path(os.environ.get("EARSHOT_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))
SPEECH_FOLDERS = ("utterances", "long")
QUICK_UTTERANCES = 6
QUICK_LONG = 1

# Pass/fail limits (see README): streaming may cost at most 10% relative WER over
# offline decoding, and a live caller must see results promptly.
WER_RELATIVE_LIMIT = 1.10
FINAL_LATENCY_P50_LIMIT_S = 0.700
FINAL_LATENCY_P95_LIMIT_S = 1.000
PARTIAL_LAG_P95_LIMIT_S = 1.5


# --- data --------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusFile:
    rel: str  # path relative to the corpus root, as in manifest.tsv
    path: Path
    kind: str  # utterances | long | nonspeech
    seconds: float  # measured from the WAV, not the manifest's rounded value
    text: str  # reference transcript ("" for nonspeech)


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


@dataclass(frozen=True)
class FileRow:
    path: str
    kind: str
    audio_s: float
    ref_words: int
    stream_errors: int
    stream_wer: float
    offline_errors: int
    offline_wer: float
    finals: int
    partials: int
    dropped_utterances: int  # VAD utterances too short to decode
    realtime_wall_s: float
    realtime_overrun_s: float  # wall time beyond audio + silence tail: the last final came after the tail ended
    fast_wall_s: float
    offline_wall_s: float
    rss_mib_after: float  # resident memory after the realtime pass of this file
    stream_text: str
    offline_text: str


@dataclass(frozen=True)
class FinalRow:
    path: str
    utterance_id: int
    start_s: float
    end_s: float
    speech_s: float
    latency_s: float  # emitted_audio_s - speech_end_audio_s
    asr_inference_s: float
    asr_queued_s: float
    words: int


# --- statistics ----------------------------------------------------------------------
def wer_by_kind(rows: list["FileRow"]) -> dict[str, dict[str, Any]]:
    """Utterances vs long answers: streaming cuts long answers into utterances, offline reads them whole."""
    result = {}
    for kind in sorted({r.kind for r in rows}):
        chosen = [r for r in rows if r.kind == kind]
        words = sum(r.ref_words for r in chosen)
        result[kind] = {
            "ref_words": words,
            "streaming": round(sum(r.stream_errors for r in chosen) / max(words, 1), 4),
            "offline": round(sum(r.offline_errors for r in chosen) / max(words, 1), 4),
        }
    return result


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Corpus-level WER: total errors over total reference words (not a mean of file WERs)."""
    errors = words = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors, words = errors + e, words + n
    return {"errors": errors, "ref_words": words, "wer": round(errors / max(words, 1), 4)}


# --- corpus ----------------------------------------------------------------------------
def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def load_corpus(root: Path) -> list[CorpusFile]:
    with open(root / "manifest.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    files = []
    for row in rows:
        kind = row["path"].split("/", 1)[0]
        if kind not in SPEECH_FOLDERS + ("nonspeech",):
            continue  # calls/ is two-track agent-assist audio, not this benchmark's subject
        path = root / row["path"]
        files.append(CorpusFile(row["path"], path, kind, wav_seconds(path), row["text"] if kind != "nonspeech" else ""))
    # nonspeech/ may hold files the manifest does not list; they need no reference text.
    listed = {f.rel for f in files}
    for path in sorted((root / "nonspeech").glob("*.wav")):
        rel = path.relative_to(root).as_posix()
        if rel not in listed:
            files.append(CorpusFile(rel, path, "nonspeech", wav_seconds(path), ""))
    return files


def pick(files: list[CorpusFile], kind: str, quick_count: Optional[int]) -> list[CorpusFile]:
    chosen = [f for f in files if f.kind == kind]
    if quick_count is None:
        return chosen
    if kind == "long":
        return sorted(chosen, key=lambda f: f.seconds)[:quick_count]  # the shortest keeps --quick quick
    step = max(1, len(chosen) // quick_count)  # spread over the speakers, not just the first reader
    return chosen[::step][:quick_count]


# --- contention ----------------------------------------------------------------------------
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


# --- passes ------------------------------------------------------------------------------
DRAIN_AUDIO = bytes(1600 * 2)  # 0.1 s of silence


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


# --- metrics -------------------------------------------------------------------------------
def final_rows(runs: list[StreamRun]) -> list[FinalRow]:
    return [
        FinalRow(
            path=run.file.rel,
            utterance_id=f.utterance_id,
            start_s=f.start,
            end_s=f.end,
            speech_s=round(f.end - f.start, 3),
            latency_s=round(f.emitted_audio_s - f.speech_end_audio_s, 3),
            asr_inference_s=f.asr_inference_s,
            asr_queued_s=f.asr_queued_s,
            words=len(f.text.split()),
        )
        for run in runs
        for f in run.finals
    ]


def partial_lags(runs: list[StreamRun]) -> list[float]:
    """How far behind the live audio each shown hypothesis was when it reached the caller."""
    return [p.emitted_audio_s - p.audio_end_s for run in runs for p in run.partials]


def first_partial_delays(runs: list[StreamRun]) -> tuple[list[float], int]:
    """Per utterance: first partial's arrival minus where the voice started; and how many had none."""
    delays, without = [], 0
    for run in runs:
        first_partial: dict[int, float] = {}
        for p in run.partials:
            first_partial.setdefault(p.utterance_id, p.emitted_audio_s)
        for start in run.of_type(protocol.SpeechStart):
            if start.utterance_id in first_partial:
                delays.append(first_partial[start.utterance_id] - start.start_s)
            else:
                without += 1  # short utterances often end before the first partial is due
    return delays, without


def file_rows(realtime: list[StreamRun], fast: list[StreamRun], offline: dict[str, OfflineResult], settings: Settings) -> list[FileRow]:
    fast_by_path = {run.file.rel: run for run in fast}
    tail_s = settings.end_of_speech_ms / 1000 + 0.5  # silence transcribe_file streams after each file
    rows = []
    for run in realtime:
        f = run.file
        stream_errors, ref_words = word_errors(f.text, run.text)
        offline_errors, _ = word_errors(f.text, offline[f.rel].text)
        rows.append(
            FileRow(
                path=f.rel,
                kind=f.kind,
                audio_s=round(f.seconds, 3),
                ref_words=ref_words,
                stream_errors=stream_errors,
                stream_wer=round(stream_errors / max(ref_words, 1), 4),
                offline_errors=offline_errors,
                offline_wer=round(offline_errors / max(ref_words, 1), 4),
                finals=len(run.finals),
                partials=len(run.partials),
                dropped_utterances=sum(1 for e in run.of_type(protocol.SpeechEnd) if e.dropped),
                realtime_wall_s=round(run.wall_s, 3),
                realtime_overrun_s=round(run.wall_s - (f.seconds + tail_s), 3),
                fast_wall_s=round(fast_by_path[f.rel].wall_s, 3),
                offline_wall_s=round(offline[f.rel].wall_s, 3),
                rss_mib_after=run.rss_mib_after,
                stream_text=run.text,
                offline_text=offline[f.rel].text,
            )
        )
    return rows


def speed_summary(fast: list[StreamRun]) -> dict[str, Any]:
    audio_s = sum(run.file.seconds for run in fast)
    wall_s = sum(run.wall_s for run in fast)
    inference_s = sum(f.asr_inference_s for run in fast for f in run.finals)
    return {
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall_s, 3),
        "rtf": round(wall_s / audio_s, 4),  # includes partial decodes and the 1 s silence tail per file
        "final_inference_s": round(inference_s, 3),
        "final_inference_rtf": round(inference_s / audio_s, 4),  # finals only: partials report no timing
    }


def nonspeech_summary(runs: list[StreamRun]) -> dict[str, Any]:
    rows = [
        {
            "path": run.file.rel,
            "finals": len(run.finals),
            "nonempty_partials": sum(1 for p in run.partials if (p.committed + p.tentative).strip()),
            "texts": [f.text for f in run.finals],
        }
        for run in runs
    ]
    return {
        "files": rows,
        "finals": sum(r["finals"] for r in rows),
        "nonempty_partials": sum(r["nonempty_partials"] for r in rows),
    }


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stream, offline = report["wer"]["streaming"]["wer"], report["wer"]["offline"]["wer"]
    latency, lag = report["final_latency_s"], report["partial_lag_s"]
    nonspeech = report["nonspeech"]["finals"] + report["nonspeech"]["nonempty_partials"]

    def target(value: Optional[float], limit: float, what: str) -> dict[str, Any]:
        return {"value": value, "limit": round(limit, 4), "pass": value is not None and value <= limit, "what": what}

    return {
        "streaming_wer": target(stream, offline * WER_RELATIVE_LIMIT, "streaming WER <= offline WER x 1.10"),
        "final_latency_p50_s": target(latency["p50"], FINAL_LATENCY_P50_LIMIT_S, "final latency p50 <= 0.700 s"),
        "final_latency_p95_s": target(latency["p95"], FINAL_LATENCY_P95_LIMIT_S, "final latency p95 <= 1.000 s"),
        "partial_lag_p95_s": target(lag["p95"], PARTIAL_LAG_P95_LIMIT_S, "partial lag p95 <= 1.5 s"),
        "nonspeech_outputs": target(nonspeech, 0, "no final and no partial on nonspeech/"),
    }


# --- environment ------------------------------------------------------------------------------
def package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in ("faster-whisper", "ctranslate2", "numpy", "webrtcvad-wheels", "av")},
        "git": git_state(),
    }


def settings_dict(settings: Settings) -> dict[str, Any]:
    return settings.public()


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- output -------------------------------------------------------------------------------------
def hist_with_cdf(ax, values: np.ndarray, color: str, label: str) -> None:
    """Histogram on the left axis, its empirical CDF on a right axis: the tail shows in both."""
    if not values.size:
        return
    ax.hist(values, bins=30, color=color, alpha=0.6, label=label)
    cdf = ax.twinx()
    cdf.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=color)
    cdf.set_ylim(0, 1.02)
    cdf.set_ylabel("CDF")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    finals = report["finals"]
    files = report["files"]
    latencies = np.sort([f["latency_s"] for f in finals])
    lags = np.sort(report["partial_lags_s"])
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    fig.suptitle(f"Earshot ASR bench: {report['model']} ({report['settings']['asr_compute_type']}, "
                 f"{report['settings']['asr_device']}), {report['timestamp']}")

    ax = axes[0, 0]
    hist_with_cdf(ax, latencies, "tab:blue", "finals")
    for limit, style in ((FINAL_LATENCY_P50_LIMIT_S, "--"), (FINAL_LATENCY_P95_LIMIT_S, ":")):
        ax.axvline(limit, color="tab:red", linestyle=style, label=f"target {limit:.1f} s")
    ax.set_title("Final latency (emitted - speech end, incl. end-of-speech silence)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("finals")
    ax.legend(loc="center right")

    ax = axes[0, 1]
    hist_with_cdf(ax, lags, "tab:green", "partials")
    ax.axvline(PARTIAL_LAG_P95_LIMIT_S, color="tab:red", linestyle=":", label=f"p95 target {PARTIAL_LAG_P95_LIMIT_S} s")
    ax.set_title("Partial lag (emitted - end of audio heard)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("partials")
    ax.legend(loc="center right")

    ax = axes[1, 0]
    x = np.arange(len(files))
    ax.bar(x - 0.2, [100 * f["stream_wer"] for f in files], width=0.4, label="streaming")
    ax.bar(x + 0.2, [100 * f["offline_wer"] for f in files], width=0.4, label="offline")
    ax.set_xticks(x)
    ax.set_xticklabels([Path(f["path"]).stem for f in files], rotation=90, fontsize=7)
    ax.set_ylabel("WER %")
    wer = report["wer"]
    ax.set_title(f"Per-file WER: streaming {100 * wer['streaming']['wer']:.1f}% vs offline {100 * wer['offline']['wer']:.1f}%")
    ax.legend()

    ax = axes[1, 1]
    ax.scatter([f["speech_s"] for f in finals], [f["asr_inference_s"] for f in finals], s=14, label="inference")
    ax.scatter([f["speech_s"] for f in finals], [f["asr_queued_s"] for f in finals], s=14, marker="x", label="queued")
    ax.set_title("Final decode time vs utterance length (realtime pass)")
    ax.set_xlabel("utterance speech length, s")
    ax.set_ylabel("seconds")
    ax.legend()

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value: Optional[float], unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def print_table(report: dict[str, Any]) -> None:
    wer, speed = report["wer"], report["speed"]
    lines = [
        f"Earshot ASR bench - model {report['model']}, {report['corpus']['speech_files']} speech files, "
        f"{report['corpus']['speech_audio_s']:.1f} s audio, run {report['run_s']:.0f} s",
        "",
        f"{'WER':28s} {'errors':>7s} {'words':>7s} {'WER':>8s}",
    ]
    for name in ("streaming", "streaming_fast", "offline"):
        w = wer[name]
        lines.append(f"  {name:26s} {w['errors']:7d} {w['ref_words']:7d} {100 * w['wer']:7.2f}%")
    lines.append(f"  {'relative (stream-offline)/offline':42s} {100 * wer['relative_difference']:+7.1f}%"
                 if wer["relative_difference"] is not None else "  relative difference: - (offline WER is 0)")
    for kind, w in wer["by_kind"].items():
        lines.append(f"  {kind + ' only':26s} {w['ref_words']:15d}   stream {100 * w['streaming']:.2f}%  offline {100 * w['offline']:.2f}%")
    lines += ["", f"{'distribution (s)':28s} {'n':>5s} {'p50':>7s} {'p90':>7s} {'p95':>7s} {'p99':>7s} {'max':>7s} {'mean':>7s}"]
    for key in ("final_latency_s", "asr_inference_s", "asr_queued_s", "partial_lag_s", "time_to_first_partial_s"):
        d = report[key]
        lines.append(f"  {key:26s} {d['count']:5d} " + " ".join(f"{fmt(d[p]):>7s}" for p in ("p50", "p90", "p95", "p99", "max", "mean")))
    lines += [
        f"  utterances without a partial: {report['utterances_without_partial']}",
        "",
        f"speed (realtime=False): wall {speed['wall_s']:.1f} s / audio {speed['audio_s']:.1f} s = RTF {speed['rtf']:.3f}; "
        f"final inference RTF {speed['final_inference_rtf']:.3f}",
        f"peak RSS: {report['memory']['peak_rss_mib_streaming']:.0f} MiB streaming, "
        f"{report['memory']['peak_rss_mib']:.0f} MiB with the offline model",
        f"nonspeech: {report['nonspeech']['finals']} finals, {report['nonspeech']['nonempty_partials']} non-empty partials",
        f"pipeline errors: {sum(report['pipeline_errors']['error_events'].values())} error events, "
        f"{report['pipeline_errors']['unretrieved_task_exceptions']} unretrieved task exceptions",
        "other processes' CPU share: " + ", ".join(
            f"{name} pass {100 * c['foreign_share']:.0f}% ({c['foreign_cpu_s']:.0f} CPU-s)" for name, c in report["contention"].items()
        ) + ("  <- timings disturbed" if any(c["foreign_share"] > 0.05 for c in report["contention"].values()) else ""),
        "",
        "targets:",
    ]
    for name, t in report["targets"].items():
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {name:22s} {fmt(t['value']):>8s} <= {t['limit']:.3f}   ({t['what']})")
    print("\n".join(lines))


# --- main -----------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="asr_model setting (default: EARSHOT_ASR_MODEL or tiny.en)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="output folder")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="speech corpus root (has manifest.tsv)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_UTTERANCES} utterances + {QUICK_LONG} long file")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    run_started = time.monotonic()
    settings = settings_from_env(asr_model=args.model)
    quick = QUICK_UTTERANCES if args.quick else None
    corpus = load_corpus(args.corpus)
    speech = pick(corpus, "utterances", quick) + pick(corpus, "long", QUICK_LONG if args.quick else None)
    nonspeech = [f for f in corpus if f.kind == "nonspeech"]

    engine = AsrEngine.load(asr_config(settings))
    try:
        passes = asyncio.run(stream_passes(engine, settings, speech, nonspeech))
    finally:
        engine.close()
    realtime, fast = passes.realtime, passes.fast
    rss_streaming = peak_rss_mib()  # before the offline model adds its own copy of the weights

    offline, offline_load_s = offline_pass(whisper_model_dir(settings.asr_model, settings.data_dir), speech)

    rows = file_rows(realtime, fast, offline, settings)
    finals = final_rows(realtime)
    lags = partial_lags(realtime)
    first_partials, without_partial = first_partial_delays(realtime)
    stream_wer = corpus_wer((run.file.text, run.text) for run in realtime)
    offline_wer = corpus_wer((f.text, offline[f.rel].text) for f in speech)
    model_name = Path(settings.asr_model).name or settings.asr_model
    report: dict[str, Any] = {
        "model": model_name,
        "quick": args.quick,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings_dict(settings),
        "corpus": {
            "root": str(args.corpus),
            "speech_files": len(speech),
            "speech_audio_s": round(sum(f.seconds for f in speech), 3),
            "nonspeech_files": len(nonspeech),
        },
        "wer": {
            "streaming": stream_wer,
            "streaming_fast": corpus_wer((run.file.text, run.text) for run in fast),  # same pipeline, unpaced
            "offline": offline_wer,
            "relative_difference": round((stream_wer["wer"] - offline_wer["wer"]) / offline_wer["wer"], 4)
            if offline_wer["wer"] else None,
            "by_kind": wer_by_kind(rows),
        },
        "final_latency_s": percentiles(f.latency_s for f in finals),
        "asr_inference_s": percentiles(f.asr_inference_s for f in finals),
        "asr_queued_s": percentiles(f.asr_queued_s for f in finals),
        "partial_lag_s": percentiles(lags),
        "time_to_first_partial_s": percentiles(first_partials),
        "utterances_without_partial": without_partial,
        "speed": speed_summary(fast),
        "offline_speed": {
            "load_s": round(offline_load_s, 3),
            "wall_s": round(sum(r.wall_s for r in offline.values()), 3),
            "rtf": round(sum(r.wall_s for r in offline.values()) / sum(f.seconds for f in speech), 4),
        },
        "memory": {"peak_rss_mib_streaming": rss_streaming, "peak_rss_mib": peak_rss_mib()},
        "contention": passes.contention,
        "pipeline_errors": {
            "error_events": {name: sum(len(run.of_type(protocol.Error)) for run in runs)
                             for name, runs in (("realtime", realtime), ("fast", fast), ("nonspeech", passes.nonspeech))},
            "unretrieved_task_exceptions": len(passes.loop_errors),
            "samples": sorted(set(passes.loop_errors))[:10],
        },
        "nonspeech": nonspeech_summary(passes.nonspeech),
    }
    report["targets"] = check_targets(report)
    report["all_pass"] = all(t["pass"] for t in report["targets"].values())
    report["run_s"] = round(time.monotonic() - run_started, 1)
    report["files"] = [dataclasses.asdict(r) for r in rows]
    report["finals"] = [dataclasses.asdict(f) for f in finals]
    report["partial_lags_s"] = [round(v, 3) for v in lags]

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"asr-{re.sub(r'[^A-Za-z0-9._-]+', '_', model_name)}" + ("-quick" if args.quick else "")  # a smoke test never overwrites a full run
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(report, png_path)
    print_table(report)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

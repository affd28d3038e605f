"""The ASR bench's results: per-file and per-final rows, summaries, targets, the plot and the table.

WER is computed by earshot.loadtest.wer (jiwer over OpenAI's English
normaliser, as published ASR results are), and the JSON says so (`wer_method`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from bench.asr_passes import OfflineResult, StreamPasses, StreamRun
from earshot.loadtest.wer import word_errors
from earshot.server import protocol
from earshot.server.settings import Settings

# Pass/fail limits (see README): streaming may cost at most 10% relative WER over
# offline decoding, and a live caller must see results promptly.
WER_RELATIVE_LIMIT = 1.10
FINAL_LATENCY_P50_LIMIT_S = 0.700
FINAL_LATENCY_P95_LIMIT_S = 1.000
PARTIAL_LAG_P95_LIMIT_S = 1.5


# --- rows --------------------------------------------------------------------------------------
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


# --- WER ---------------------------------------------------------------------------------------
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


# --- summaries ---------------------------------------------------------------------------------
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


# --- plot and table -----------------------------------------------------------------------------
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


# --- sections of the results file ------------------------------------------------------------------
def wer_summary(realtime: list[StreamRun], fast: list[StreamRun], offline: dict[str, OfflineResult], rows: list[FileRow]) -> dict[str, Any]:
    stream_wer = corpus_wer((run.file.text, run.text) for run in realtime)
    offline_wer = corpus_wer((run.file.text, offline[run.file.rel].text) for run in realtime)
    return {
        "streaming": stream_wer,
        "streaming_fast": corpus_wer((run.file.text, run.text) for run in fast),  # same pipeline, unpaced
        "offline": offline_wer,
        "relative_difference": round((stream_wer["wer"] - offline_wer["wer"]) / offline_wer["wer"], 4)
        if offline_wer["wer"] else None,
        "by_kind": wer_by_kind(rows),
    }


def pipeline_errors(passes: StreamPasses) -> dict[str, Any]:
    by_pass = (("realtime", passes.realtime), ("fast", passes.fast), ("nonspeech", passes.nonspeech))
    return {
        "error_events": {name: sum(len(run.of_type(protocol.Error)) for run in runs) for name, runs in by_pass},
        "unretrieved_task_exceptions": len(passes.loop_errors),
        "samples": sorted(set(passes.loop_errors))[:10],
    }

"""ASR benchmark: streaming vs offline WER, final latency, partial lag, speed, memory.

    python -m bench.run_bench [--model tiny.en] [--out bench/results] [--quick]

Passes, one after another so none disturbs another's timing (bench/asr_passes.py):

1. realtime  - every speech file through `transcribe_file(realtime=True)`, paced by
               the wall clock as a live caller would be: WER, final latency, partial lag.
2. fast      - the same files with realtime=False (as fast as possible): real-time factor.
3. nonspeech - nonspeech/ files, realtime=False: must yield no final and no partial.
4. offline   - faster-whisper's own `transcribe` (beam 5, 30 s windows) on the same
               model: the WER the streaming pipeline is judged against.

Writes bench/results/asr-<model>.json and .png (bench/asr_report.py); see bench/README.md for the fields.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

from bench.asr_passes import offline_pass, peak_rss_mib, stream_passes
from bench.asr_report import (
    check_targets,
    file_rows,
    final_rows,
    first_partial_delays,
    nonspeech_summary,
    partial_lags,
    pipeline_errors,
    plot,
    print_table,
    speed_summary,
    wer_summary,
)
from bench.common import DEFAULT_CORPUS, RESULTS_DIR, CorpusFile, load_corpus, machine_info, utc_timestamp, write_results
from earshot.loadtest.stats import percentiles
from earshot.loadtest.wer import method as wer_method
from earshot.models.asr import AsrEngine
from earshot.models.model_files import whisper_model_dir
from earshot.server.configs import asr_config
from earshot.server.settings import Settings
from earshot.server.settings_sources import settings_from_env

QUICK_UTTERANCES = 6
QUICK_LONG = 1


def pick(files: list[CorpusFile], kind: str, quick_count: Optional[int]) -> list[CorpusFile]:
    chosen = [f for f in files if f.kind == kind]
    if quick_count is None:
        return chosen
    if kind == "long":
        return sorted(chosen, key=lambda f: f.seconds)[:quick_count]  # the shortest keeps --quick quick
    step = max(1, len(chosen) // quick_count)  # spread over the speakers, not just the first reader
    return chosen[::step][:quick_count]


def model_name(settings: Settings) -> str:
    return Path(settings.asr_model).name or settings.asr_model


def recorded_config(
    settings: Settings, quick: bool, corpus_root: Path, speech: list[CorpusFile], nonspeech: list[CorpusFile]
) -> dict[str, Any]:
    """The head of the results file: what ran, on what, with which settings (secrets masked) and how WER was scored."""
    return {
        "model": model_name(settings),
        "quick": quick,
        "timestamp": utc_timestamp(),
        "machine": machine_info(),
        "settings": settings.public(),
        "corpus": {
            "root": str(corpus_root),
            "speech_files": len(speech),
            "speech_audio_s": round(sum(f.seconds for f in speech), 3),
            "nonspeech_files": len(nonspeech),
        },
        "wer_method": wer_method(),
    }


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="asr_model setting (default: EARSHOT_ASR_MODEL or tiny.en)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
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
    report = recorded_config(settings, args.quick, args.corpus, speech, nonspeech)
    report.update({
        "wer": wer_summary(realtime, fast, offline, rows),
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
        "pipeline_errors": pipeline_errors(passes),
        "nonspeech": nonspeech_summary(passes.nonspeech),
    })
    report["targets"] = check_targets(report)
    report["all_pass"] = all(t["pass"] for t in report["targets"].values())
    report["run_s"] = round(time.monotonic() - run_started, 1)
    report["files"] = [dataclasses.asdict(r) for r in rows]
    report["finals"] = [dataclasses.asdict(f) for f in finals]
    report["partial_lags_s"] = [round(v, 3) for v in lags]

    # a smoke test never overwrites a full run
    stem = f"asr-{re.sub(r'[^A-Za-z0-9._-]+', '_', report['model'])}" + ("-quick" if args.quick else "")
    json_path = write_results(args.out, stem, report)
    png_path = args.out / f"{stem}.png"
    plot(report, png_path)
    print_table(report)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

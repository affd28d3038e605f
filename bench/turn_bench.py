"""End-of-turn benchmark: the end-of-turn model against the silence timers, on the turn test set.

    python -m bench.turn_bench [--quick] [--out bench/results] [--parts sweep,live,wer]

Three passes, one after another (bench/turn_set.py builds the answers: designed
pauses inside them where the interviewer must not speak, then >= 3 s of quiet):

1. sweep - offline (bench/turn_sweep.py): the model asked at every pause of
   every answer at 90..1500 ms of silence, then the Endpointer's rules replayed
   for thresholds 0.3-0.9, first-check points and re-check schedules: takeovers
   inside answers against the time from the end of voice to the decision. It
   picks the fastest point within the takeover limits.
2. live  - (bench/turn_live.py) one server per `--endpointing` mode, one
   scripted interview each over WebRTC on loopback, answered with the same
   answers in the same order: end of voice -> final, end of voice -> the
   interviewer's reply, takeovers, finals cut at a designed pause, why each
   utterance ended, the model's CPU per call.
3. wer   - the corpus through the live pipeline, paced in real time, in each
   mode (bench/asr_passes.py): the streaming WER each endpointing gives.

Writes bench/results/turn.json and turn.png (turn-quick.* with --quick).
"""

# MEASURED (python -m bench.turn_bench, 2026-12-06, the 2-core reference box, idle; bench/README.md has the tables):
#   sweep, 38 answers / 34 designed pauses: timers 500+700 ms decide 1.28 s after the end of voice (p50) and take
#     over 10 designed pauses; the default (0.9, 200 ms, words check) decides at 0.32 s (p95 0.76 s: 2 answer ends
#     left to the fallback) and takes over 6 (11 without the words check); no point reaches 5 %.
#   live, 12 answers each: reply heard p50 1.43 s (silence) vs 0.83 s (model, 200 ms reply gap; 0.65 s without it,
#     and one takeover at a comma pause), p95 1.49 vs 1.79 s (one answer end left to the fallback); designed pauses
#     taken over 5 vs 0; end of voice -> final p50 0.63 vs 0.52 s. Streaming WER 3.15 % vs 3.05 %.

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from bench import turn_sweep
from bench.asr_passes import contention, cpu_snapshot, record_loop_errors, stream_files
from bench.asr_report import corpus_wer
from bench.common import (
    DEFAULT_CORPUS,
    RESULTS_DIR,
    load_corpus,
    machine_info,
    progress,
    utc_timestamp,
    wav_seconds,
    write_results,
)
from bench.run_bench import pick
from bench.turn_live import live_pass
from bench.turn_report import plot, print_tables
from bench.turn_set import build_turn_set
from earshot.loadtest.wer import method as wer_method
from earshot.models.asr import AsrEngine
from earshot.models.turn_model import EndOfTurnModel
from earshot.server.configs import asr_config, end_of_turn_config, vad_config
from earshot.server.ice import restrict_ice_to_loopback
from earshot.server.settings import Settings
from earshot.server.settings_sources import settings_from_env

MODES = ("silence", "model")
PARTS = ("sweep", "live", "wer")
KIND_ORDER = ("hesitation", "complete", "mid_clause", "list")  # round-robin: any prefix mixes the kinds
# The live part's time per mode: a server start (~20 s), the greeting (~20 s), then answers. An answer
# costs its WAV (the reply comes during its trailing quiet) and the interviewer's next question, ~7 s.
LIVE_BUDGET_S = {"full": 330.0, "quick": 85.0}
LIVE_ANSWER_COST_S = 7.0
LIVE_ANSWER_S = {"full": 270.0, "quick": 45.0}
QUICK_SWEEP_ITEMS = 8
MAX_VAD_TAIL_S = 0.5  # elsewhere the VAD's last voiced frame lies up to 0.2 s after the audible end
QUICK_WER = {"utterances": 3, "long": 1}
SETTING_NAMES = (
    "endpointing", "end_of_speech_ms", "turn_pause_ms", "end_of_turn_threshold", "end_of_turn_checks_ms",
    "end_of_turn_fallback_ms", "end_of_turn_min_speech_ms", "end_of_turn_timeout_ms", "end_of_turn_threads",
    "vad_aggressiveness", "vad_frame_ms", "vad_noise_gate_db", "end_of_turn_check_words",
)


def mode_settings(mode: str) -> Settings:
    return settings_from_env(endpointing=mode)  # the environment's EARSHOT_* apply to both modes alike


def round_robin(items: Sequence[Any]) -> list[Any]:
    by_kind = {kind: sorted((i for i in items if i.kind == kind), key=lambda i: i.id) for kind in KIND_ORDER}
    rest = sorted((i for i in items if i.kind not in KIND_ORDER), key=lambda i: i.id)
    ordered: list[Any] = []
    while any(by_kind.values()):
        for kind in KIND_ORDER:
            if by_kind[kind]:
                ordered.append(by_kind[kind].pop(0))
    return ordered + rest


def usable(items: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
    """The answers whose end the VAD hears within MAX_VAD_TAIL_S of the audible end; the rest, with why."""
    vad = vad_config(mode_settings("model"))
    kept, excluded = [], {}
    for item in items:
        tail = turn_sweep.vad_voice_end(item, vad) - item.voice_end_s
        if tail > MAX_VAD_TAIL_S:
            excluded[item.id] = f"the VAD hears voice {tail:.2f} s past the audible end (its quiet is not quiet to webrtcvad)"
        else:
            kept.append(item)
    return kept, excluded


def live_items(items: Sequence[Any], answer_s: float) -> list[Any]:
    """The first answers, mixing the kinds, that fit the live budget (the same list for both modes)."""
    chosen, spent = [], 0.0
    for item in round_robin(items):
        cost = wav_seconds(item.path) + LIVE_ANSWER_COST_S
        if chosen and spent + cost > answer_s:
            break
        chosen.append(item)
        spent += cost
    return chosen


def transcriber(engine: AsrEngine) -> turn_sweep.Transcriber:
    """The final decode the pipeline starts at the pause hint, run to its end (for the words check)."""
    def words(pcm: bytes) -> Optional[str]:
        transcript = asyncio.run(engine.transcribe("turn-sweep", pcm, final=True))
        return transcript.text if transcript is not None else None

    return words


def sweep_pass(items: Sequence[Any]) -> dict[str, Any]:
    settings = mode_settings("model")
    model = EndOfTurnModel.load(end_of_turn_config(settings))
    engine = AsrEngine.load(asr_config(settings))
    started = time.monotonic()
    try:
        caches = turn_sweep.collect(items, model, vad_config(settings), words=transcriber(engine))
    finally:
        engine.close()
    rows = turn_sweep.sweep(caches)
    timers = mode_settings("silence")
    baseline = turn_sweep.silence_baseline(caches, timers.end_of_speech_ms, timers.turn_pause_ms)
    best, why = turn_sweep.choose(rows, baseline)
    checks = tuple(int(s) for s in best["checks_ms"].split(","))
    default = turn_sweep.Point(settings.end_of_turn_threshold, settings.end_of_turn_checks, settings.end_of_turn_fallback_ms,
                               settings.end_of_turn_min_speech_ms, check_words=settings.end_of_turn_check_words)
    return {
        "answers": len(caches),
        "mid_pauses": sum(c.mid_pauses for c in caches),
        "model_calls_inference_s": turn_sweep.inference_times(caches),
        "collect_s": round(time.monotonic() - started, 1),
        "grid_ms": list(turn_sweep.GRID_MS),
        "limits": {"max_mid_takeover_rate": turn_sweep.MAX_MID_TAKEOVER_RATE,
                   "max_answers_taken_over_rate": turn_sweep.MAX_ANSWERS_TAKEN_OVER_RATE},
        "silence_baseline": baseline,
        "table": rows,
        "chosen": best,
        "chosen_why": why,
        "default_point": turn_sweep.evaluate(caches, default),
        "default_point_without_words": turn_sweep.evaluate(caches, replace(default, check_words=False)),
        "table_without_words": turn_sweep.sweep(caches, check_words=False),
        "pauses_held_by_words": {label: sum(1 for c in caches for p in c.pauses if p.label == label and p.words_unfinished)
                                 for label in ("mid", "gap", "end")},
        "fallbacks_at_chosen": turn_sweep.fallback_rows(caches, best["threshold"], checks),
        "probabilities_at_200ms": turn_sweep.end_probabilities(caches),
    }


async def wer_runs(engine: AsrEngine, files: list) -> dict[str, Any]:
    loop_errors = record_loop_errors(asyncio.get_running_loop())
    out: dict[str, Any] = {}
    for mode in MODES:
        before = cpu_snapshot()
        runs = await stream_files(engine, mode_settings(mode), files, realtime=True, label=f"wer-{mode}")
        out[mode] = {
            "contention": contention(before, cpu_snapshot()),
            "streaming": corpus_wer((r.file.text, r.text) for r in runs),
            "by_kind": {kind: corpus_wer((r.file.text, r.text) for r in runs if r.file.kind == kind)
                        for kind in sorted({r.file.kind for r in runs})},
            "finals": sum(len(r.finals) for r in runs),
        }
    out["loop_errors"] = loop_errors
    return out


def wer_pass(corpus_root: Path, quick: bool) -> dict[str, Any]:
    corpus = load_corpus(corpus_root)
    files = [f for kind in ("utterances", "long") for f in pick(corpus, kind, QUICK_WER[kind] if quick else None)]
    engine = AsrEngine.load(asr_config(mode_settings("model")))
    try:
        result = asyncio.run(wer_runs(engine, files))
    finally:
        engine.close()
    result["files"] = len(files)
    result["audio_s"] = round(sum(f.seconds for f in files), 1)
    result["wer_method"] = wer_method()
    return result


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--quick", action="store_true", help="a few answers and files: about 5 minutes")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which passes, comma-separated ({','.join(PARTS)})")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    size = "quick" if args.quick else "full"
    run_started = time.monotonic()
    report: dict[str, Any] = {
        "timestamp": utc_timestamp(),
        "quick": args.quick,
        "machine": machine_info(),
        "settings": {mode: {name: mode_settings(mode).public()[name] for name in SETTING_NAMES} for mode in MODES},
    }
    with tempfile.TemporaryDirectory(prefix="earshot-turn-bench-") as tmp:
        built = build_turn_set(Path(tmp) / "turn-set", args.corpus)
        items, excluded = usable(built)
        report["turn_set"] = {"answers": len(items), "mid_pauses": sum(len(i.pauses) for i in items),
                              "kinds": {k: sum(1 for i in items if i.kind == k) for k in sorted({i.kind for i in items})},
                              "excluded": excluded}
        if "sweep" in args.parts:
            chosen = round_robin(items)[:QUICK_SWEEP_ITEMS] if args.quick else items
            progress(f"sweep: {len(chosen)} answers")
            report["sweep"] = sweep_pass(chosen)
        if "live" in args.parts:
            restrict_ice_to_loopback()
            chosen = live_items(items, LIVE_ANSWER_S[size])
            progress(f"live: {len(chosen)} answers per mode: {', '.join(i.id for i in chosen)}")
            report["live"] = live_pass(MODES, chosen, Path(tmp) / "live", LIVE_BUDGET_S[size])
            report["live"]["items"] = [i.id for i in chosen]
    if "wer" in args.parts:
        report["wer"] = wer_pass(args.corpus, args.quick)
    report["run_s"] = round(time.monotonic() - run_started, 1)
    stem = "turn-quick" if args.quick else "turn"
    json_path = write_results(args.out, stem, report)
    plot(report, args.out / f"{stem}.png")
    print_tables(report)
    print(f"\nwrote {json_path} and {args.out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

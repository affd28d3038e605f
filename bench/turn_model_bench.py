"""Time of one end-of-turn model call (models/turn_model.py) on this machine.

    python -m bench.turn_model_bench                 # 50 calls each of 8 s and 2 s of speech, 1 thread
    python -m bench.turn_model_bench --threads 2 --calls 20

Writes bench/results/turn_model.json (turn_model-<n>threads.json for another
thread count): per audio length, the wall time of `predict` (features + ONNX),
of the features alone, and the process CPU time per call, in ms. The model
always hears an 8 s window (shorter audio is padded), so the two lengths should
cost the same. Not part of `make bench` yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_CORPUS, RESULTS_DIR, machine_info, progress, utc_timestamp, write_results
from earshot.loadtest.stats import percentiles
from earshot.models.audio import SAMPLE_RATE, read_audio
from earshot.models.turn_model import EndOfTurnConfig, EndOfTurnModel, log_mel_features, model_window

CLIP = "long/answer-austen.wav"  # real speech, long enough for a full 8 s window


def time_calls(model: EndOfTurnModel, pcm: np.ndarray, calls: int) -> dict[str, Any]:
    wall, cpu, features = [], [], []
    for _ in range(calls):
        cpu_started = time.process_time()
        result = model.predict(pcm)
        cpu.append(time.process_time() - cpu_started)
        wall.append(result.inference_s)
        started = time.perf_counter()
        log_mel_features(model_window(pcm))
        features.append(time.perf_counter() - started)
    return {
        "audio_s": round(len(pcm) / SAMPLE_RATE, 2),
        "predict_wall_ms": percentiles(t * 1000 for t in wall),
        "predict_cpu_ms": percentiles(t * 1000 for t in cpu),
        "features_wall_ms": percentiles(t * 1000 for t in features),
        "probability_last": round(result.probability, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    speech = np.frombuffer(read_audio(args.corpus / CLIP), dtype=np.int16)
    model = EndOfTurnModel.load(EndOfTurnConfig(threads=args.threads))
    report: dict[str, Any] = {
        "when": utc_timestamp(),
        "machine": machine_info(),
        "model": str(model.model_path),
        "threads": args.threads,
        "calls": args.calls,
        "clip": CLIP,
    }
    for seconds in (8, 2):
        progress(f"{args.calls} calls on {seconds} s of speech, {args.threads} thread(s)")
        report[f"audio_{seconds}s"] = time_calls(model, speech[-seconds * SAMPLE_RATE :], args.calls)
    stem = "turn_model" if args.threads == 1 else f"turn_model-{args.threads}threads"
    path = write_results(args.out, stem, report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

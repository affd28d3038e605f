"""Intent head and agent-assist benchmark.

    python -m bench.intent_bench [--calls 2] [--out bench/results] [--quick] [--intent-only]

Two passes:

1. intent - the shipped heads on every test-split utterance, one utterance at
   a time on one thread (as the server runs them), for each encoder backend
   (torch, onnx): test micro-F1 on that backend's features (ONNX runs MPNet
   in int8), inference time per utterance (encode + head), p50/p95/p99;
   then in batches of 4, 8 and 16 (simultaneous finals), time per utterance.
   Also the committed test-split metrics of each head, for the record.
2. assist - `--calls` assist calls over WebRTC on loopback with the embedded
   models: `calls/call-1.wav`, agent on channel 0 and customer on channel 1,
   as two tracks in real time. At the headless caller, per customer final:
     knowledge_suggestion_s = first suggestion (canned answer) arrives - the final arrives
     llm_suggestion_s       = the LLM's worded suggestion (final) arrives - the final arrives
     intent_after_final_s   = the final's intent arrives - the final arrives
   and per final of either side: final_s = the final's arrival - end of that voice.

Writes bench/results/intent.json and intent.png (intent-quick.* with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_CORPUS, RESULTS_DIR, machine_info, progress, utc_timestamp, write_results
from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.server_process import start_server
from earshot.loadtest.stats import percentiles
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, read_audio
from earshot.models.encoder import SentenceEncoder
from earshot.models.intent import HEADS_DIR, LABEL_SETS, IntentClassifier, encoder_of, load_heads
from earshot.models.intent_dataset import load_dataset
from earshot.models.intent_evaluation import served_run
from earshot.models.intent_training import evaluation_path
from earshot.server.ice import restrict_ice_to_loopback
from earshot.server.redis_server import PrivateRedis

CALL = DEFAULT_CORPUS / "calls" / "call-1.wav"
BATCH_SIZES = (4, 8, 16)
BACKENDS = ("torch", "onnx")


def bench_intent(quick: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # what the server's encoder thread uses
    heads = load_heads(LABEL_SETS)
    result: dict[str, Any] = {"encoder": encoder_of(heads) or "bundled"}
    for backend in BACKENDS:
        encoder = SentenceEncoder.load(encoder_of(heads), threads=1, backend=backend)
        if encoder.backend != backend:
            result[backend] = {"unavailable": f"the encoder stayed on {encoder.backend}"}
            continue
        classifier = IntentClassifier(encoder, heads)
        result[backend] = {name: _time_label_set(classifier, name, quick) for name in LABEL_SETS}
    for label_set in LABEL_SETS:
        evaluation = json.loads(evaluation_path(label_set, HEADS_DIR).read_text())
        result[label_set] = {
            "test_micro_f1": evaluation["test"]["micro_f1"],
            "test_macro_f1": evaluation["test"]["macro_f1"],
            "test_examples": evaluation["test"]["examples"],
        }
    return result


def _time_label_set(classifier: IntentClassifier, label_set: str, quick: bool) -> dict[str, Any]:
    data = load_dataset(label_set)
    test = data.split("test")[: 40 if quick else None]
    texts = [u.text for u in test]
    run = served_run(classifier, label_set, texts, data.targets(test))  # what train-intent records as "served"
    out: dict[str, Any] = {
        # On this backend's own features (an int8 graph's differ from torch's, which the evaluation file used).
        "test_micro_f1": run.micro_f1,
        "inference_s": percentiles(run.times_s),
        "words_per_utterance": percentiles(len(t.split()) for t in texts),
        "batched": {},
    }
    for size in BATCH_SIZES:
        per_utterance = []
        for start in range(0, len(texts) - size + 1, size):
            started = time.perf_counter()
            classifier.classify_many(texts[start : start + size], label_set)
            per_utterance.append((time.perf_counter() - started) / size)
        out["batched"][str(size)] = {"per_utterance_s": percentiles(per_utterance)}
    backend = classifier.encoder.backend
    progress(f"intent {label_set} on {backend}: test micro-F1 {out['test_micro_f1']:.3f}, p50 {out['inference_s']['p50'] * 1000:.1f} ms, "
             f"p95 {out['inference_s']['p95'] * 1000:.1f} ms over {len(texts)} utterances; batched per utterance p50 "
             + ", ".join(f"x{k} {v['per_utterance_s']['p50'] * 1000:.1f} ms" for k, v in out["batched"].items()))
    return out


def call_channels() -> dict[str, bytes]:
    """speaker -> their channel of the call, as 16 kHz mono PCM."""
    turns = json.loads(CALL.with_suffix(".json").read_text())
    return {turns["channels"][str(c)]: read_audio(CALL, channel=c) for c in (0, 1)}


async def one_call(base_url: str, speakers: dict[str, bytes]) -> dict[str, list[float]]:
    duration = len(speakers["agent"]) / BYTES_PER_SAMPLE / SAMPLE_RATE
    caller = HeadlessCaller(base_url, speakers["agent"], mode="assist", speakers=speakers)
    await caller.connect()
    await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + 2.0, timeout=duration + 30)
    await caller.wait_until(lambda c: len(c.of_type("intent")) >= len(c.of_type("final")), timeout=10)
    await asyncio.sleep(2.0)  # LLM suggestions of the last final
    await caller.hangup()
    finals, intents, knowledge, worded = {}, {}, {}, {}
    final_s = []
    for received in caller.events:
        event, key = received.event, (received.event.get("speaker"), received.event.get("utterance_id"))
        if event["type"] == "final":
            finals[key] = received.wall
            wall_end = caller.tracks[event["speaker"]].wall_at(event["speech_end_audio_s"])
            if wall_end is not None:
                final_s.append(received.wall - wall_end)
        elif event["type"] == "intent" and event["final"]:
            intents.setdefault(key, received.wall)
        elif event["type"] == "suggestion":
            key = ("customer", event["utterance_id"])
            if event["source"] == "knowledge":
                knowledge.setdefault(key, received.wall)
            if event["final"]:
                worded.setdefault(key, (received.wall, event["source"]))
    customer = [k for k in finals if k[0] == "customer"]
    return {
        "final_s": final_s,
        "intent_after_final_s": [intents[k] - finals[k] for k in finals if k in intents],
        "knowledge_suggestion_s": [knowledge[k] - finals[k] for k in customer if k in knowledge],
        "llm_suggestion_s": [worded[k][0] - finals[k] for k in customer if k in worded and worded[k][1] == "llm"],
        "fallback_suggestions": [1.0 for k in customer if k in worded and worded[k][1] != "llm"],
        "customer_finals": [1.0 for _ in customer],
    }


def bench_assist(calls: int) -> dict[str, Any]:
    restrict_ice_to_loopback()
    speakers = call_channels()
    merged: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis = PrivateRedis(Path(tmp) / "redis")
        server = None
        try:
            server = start_server(redis.start(), Path(tmp) / "server")
            for index in range(calls):
                progress(f"assist call {index + 1}/{calls} ({len(speakers['agent']) / BYTES_PER_SAMPLE / SAMPLE_RATE:.0f} s real time)")
                for name, values in asyncio.run(one_call(server.base_url, speakers)).items():
                    merged.setdefault(name, []).extend(values)
        finally:
            if server is not None:
                server.stop()
            redis.stop()
    result = {name: percentiles(values) for name, values in merged.items() if name not in ("fallback_suggestions", "customer_finals")}
    result["customer_finals"] = len(merged.get("customer_finals", []))
    result["llm_worded_share"] = round(len(merged.get("llm_suggestion_s", [])) / max(1, result["customer_finals"]), 3)
    result["_samples"] = merged
    return result


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = [
        (f"{name}\n{backend}", report["intent"][backend][name]["inference_s"])
        for backend in BACKENDS
        for name in LABEL_SETS
        if name in report["intent"].get(backend, {})
    ]
    x = np.arange(len(bars))
    left.bar(x - 0.2, [b["p50"] * 1000 for _, b in bars], 0.4, label="p50")
    left.bar(x + 0.2, [b["p95"] * 1000 for _, b in bars], 0.4, label="p95")
    left.axhline(10, color="red", linestyle="--", label="target p95 10 ms")
    left.set_xticks(x, [name for name, _ in bars], fontsize=8)
    left.set_ylabel("ms per utterance (1 thread)")
    left.set_title("Intent inference, one utterance at a time")
    left.legend()
    samples = report.get("assist", {}).get("_samples", {})
    series = [(k, samples.get(k, [])) for k in ("intent_after_final_s", "knowledge_suggestion_s", "llm_suggestion_s")]
    series = [(k, v) for k, v in series if v]
    if not series:  # no assist pass: time per utterance by batch size instead
        for backend in BACKENDS:
            for name in LABEL_SETS:
                timing = report["intent"].get(backend, {}).get(name)
                if timing:
                    sizes = [1] + [int(k) for k in timing["batched"]]
                    p50 = [timing["inference_s"]["p50"]] + [v["per_utterance_s"]["p50"] for v in timing["batched"].values()]
                    right.plot(sizes, [v * 1000 for v in p50], marker="o", label=f"{name} {backend}")
        right.set_xlabel("utterances per encoder pass")
        right.set_ylabel("ms per utterance, p50 (1 thread)")
        right.set_title("Simultaneous finals in one batch")
        right.legend(fontsize=8)
    if series:
        right.boxplot([v for _, v in series], whis=(5, 95))
        right.set_xticks(range(1, len(series) + 1), [k.removesuffix("_s").replace("_", " ") for k, _ in series], fontsize=8)
        right.axhline(1.5, color="red", linestyle="--", label="target 1.5 s")
        right.set_ylabel("seconds after the customer's final arrives")
        right.set_title("Assist: what follows a final (caller's clock)")
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="fewer utterances and one call")
    parser.add_argument("--intent-only", action="store_true", help="skip the assist calls")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "when": utc_timestamp(),
        "machine": machine_info(),
        "intent": bench_intent(args.quick),
    }
    if args.intent_only:
        progress("--intent-only: the assist pass is skipped")
    elif CALL.is_file():
        report["assist"] = bench_assist(1 if args.quick else args.calls)
    else:
        progress(f"{CALL} is missing: the assist pass is skipped")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "intent-quick" if args.quick else "intent"
    plot(report, args.out / f"{stem}.png")
    for part in report.values():
        if isinstance(part, dict):
            part.pop("_samples", None)
    write_results(args.out, stem, report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

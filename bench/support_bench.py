"""The agent-assist overlay on six voiced support calls, live: intents, topic, sentiment trend, suggestions.

    python -m bench.support_bench [--calls billing-dispute,outage] [--parallel 1]
        -> bench/results/support_calls.json, support_calls.png

Each call of bench/support_calls/calls.json is voiced into two tracks
(bench/support_voicing.py, cached), and streamed in real time over WebRTC to
a real server in assist mode (private Redis, loopback ICE) as the assist page
sends it: one labelled track per side. No LLM: suggestions are knowledge
answers (`--no-assist-suggest-llm`; topics are by embedding without an HTTP
LLM), the default CPU path. Every event the overlay sends is recorded and
scored against the labels (bench/support_score.py). Then the confidence floors
are swept offline on the recorded finals (bench/support_replay.py), and the
JSON holds the sweep and the floors it picks.

`--topic-floor` and `--suggestion-floor` set the live server's floors (default:
the server's defaults); `--rescore FILE` scores and sweeps the events of an
earlier results file without a live pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.common import RESULTS_DIR, machine_info, progress, utc_timestamp, write_results
from bench.support_replay import sweep
from bench.support_score import overall, score_call
from bench.support_voicing import TwoVoices, load_calls, voiced
from earshot.agents.knowledge import KnowledgeBase
from earshot.agents.topic import TopicList
from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.server_process import start_server
from earshot.server.redis_server import PrivateRedis
from earshot.server.settings import Settings

TAIL_S = 2.0  # silence streamed after the call, for the last finals
SETTLE_S = 60.0  # then at most this long for every utterance's final and every suggestion


def settled(caller: HeadlessCaller) -> bool:
    """Every utterance has ended and has its final (or word that none comes), with its intent and suggestion."""
    started, ended = caller.of_type("speech_start"), caller.of_type("speech_end")
    kept = [e for e in ended if not e["dropped"]]
    finals = caller.of_type("final")
    if len(started) != len(ended) or len(finals) + len(caller.of_type("no_final")) < len(kept):
        return False
    if len([i for i in caller.of_type("intent") if i.get("final", True)]) < len(finals):
        return False
    answered = {s["utterance_id"] for s in caller.of_type("suggestion") if s["final"]}
    return all(f["utterance_id"] in answered for f in finals if f["speaker"] == "customer" and f["text"].strip())


async def stream_call(base_url: str, call: dict[str, Any], voicing: Any) -> dict[str, Any]:
    """One call streamed in real time; its events, summary and timings."""
    caller = HeadlessCaller(base_url, voicing.tracks["agent"], mode="assist", speakers=dict(voicing.tracks))
    started = time.monotonic()
    try:
        await caller.connect()
        await caller.wait_until(lambda c: c.track.audio_clock_s >= voicing.duration_s + TAIL_S,
                                timeout=voicing.duration_s + 120)
        complete = await caller.wait_until(settled, timeout=SETTLE_S)
        await caller.hangup(end_session=True, keep_api=True)  # the DELETE returns once the summary is stored
        summary = await caller.api("GET", "/summary")
    finally:
        await caller.close_api()
    progress(f"support {call['id']}: {len(caller.of_type('final'))} finals in {time.monotonic() - started:.0f} s"
             + ("" if complete else " (not settled: scored as it stood)"))
    return {
        "call": call["id"],
        "labels": call,
        "manifest": voicing.manifest(),
        "settled": complete,
        "events": [{**r.event, "received_clock_s": round(r.audio_clock_s, 3)} for r in caller.events],
        "summary": summary,
    }


async def stream_calls(base_url: str, calls: Sequence[dict[str, Any]], voicings: dict[str, Any],
                       parallel: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(parallel)

    async def one(call: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await stream_call(base_url, call, voicings[call["id"]])

    return list(await asyncio.gather(*(one(call) for call in calls)))


def live_pass(calls: Sequence[dict[str, Any]], parallel: int, floors: tuple[Optional[float], Optional[float]],
              data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    voices: Optional[TwoVoices] = None
    voicings = {}
    for call in calls:
        voices = voices or TwoVoices()
        voicings[call["id"]] = voiced(call["id"], call["turns"], voices)
    args = ["--no-assist-suggest-llm", "--assist-topic-llm", "off"]
    if floors[0] is not None:
        args += ["--assist-topic-floor", str(floors[0])]
    if floors[1] is not None:
        args += ["--assist-suggestion-floor", str(floors[1])]
    redis = PrivateRedis(data_dir / "redis")
    server = None
    try:
        server = start_server(redis.start(), data_dir, extra_args=tuple(args))
        runs = asyncio.run(stream_calls(server.base_url, calls, voicings, parallel))
    finally:
        if server is not None:
            server.stop()
        redis.stop()
    defaults = Settings()
    used = {"topic": defaults.assist_topic_floor if floors[0] is None else floors[0],
            "suggestion": defaults.assist_suggestion_floor if floors[1] is None else floors[1]}
    return runs, {"server_args": args, "floors": used, "parallel": parallel}


def report(runs: Sequence[dict[str, Any]], live: dict[str, Any], wall_s: float) -> dict[str, Any]:
    scored = [score_call(run["labels"], run["manifest"], run["events"]) for run in runs]
    progress("support: sweeping the confidence floors offline")
    swept = asyncio.run(sweep(runs, KnowledgeBase.load(), TopicList.load()))
    return {
        "bench": "support_calls",
        "at": utc_timestamp(),
        "machine": machine_info(),
        "wall_s": round(wall_s, 1),
        "live": {**live, "overall": overall(scored), "calls": scored},
        "sweep": swept,
        "runs": list(runs),  # every event, for --rescore
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    calls = result["live"]["calls"]
    names = [c["call"] for c in calls]
    series = {
        "intent micro-F1": [c["intent_micro_f1"] or 0 for c in calls],
        "right topic share": [c["topic"]["right_share"] or 0 for c in calls],
        "suggestion acceptance": [c["suggestions"]["acceptance"] or 0 for c in calls],
    }
    width = 0.27
    for i, (label, values) in enumerate(series.items()):
        axes[0].bar([x + (i - 1) * width for x in range(len(names))], values, width, label=label)
    axes[0].set_xticks(range(len(names)), names, rotation=25, ha="right")
    floors = result["live"]["floors"]
    axes[0].set_title(f"live, per call (floors: topic {floors['topic']}, suggestion {floors['suggestion']})")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    topic = result["sweep"]["topic"]["rows"]
    x = [r["topic_floor"] for r in topic]
    for key in ("topic_right_share", "topic_wrong_share", "topic_unclear_share"):
        axes[1].plot(x, [r[key] or 0 for r in topic], marker="o", label=key.replace("topic_", "").replace("_", " "))
    axes[1].axvline(result["sweep"]["topic"]["chosen"], color="grey", linestyle=":")
    axes[1].set_title("topic floor (replayed finals)")
    axes[1].set_xlabel("assist_topic_floor")
    axes[1].legend(fontsize=8)
    rows = result["sweep"]["suggestion"]["rows"]
    x = [r["suggestion_floor"] for r in rows]
    for key in ("suggestion_acceptance", "suggestion_precision", "suggestion_shown_on_null_share",
                "suggestion_shown_on_no_need_share", "objective"):
        axes[2].plot(x, [r[key] or 0 for r in rows], marker="o", label=key.replace("suggestion_", "").replace("_", " "))
    axes[2].axvline(result["sweep"]["suggestion"]["chosen"], color="grey", linestyle=":")
    axes[2].set_title("suggestion floor (replayed finals)")
    axes[2].set_xlabel("assist_suggestion_floor")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="", help="comma-separated call ids (default: all six)")
    parser.add_argument("--parallel", type=int, default=1, help="calls streamed at once (real time each)")
    parser.add_argument("--topic-floor", type=float, default=None)
    parser.add_argument("--suggestion-floor", type=float, default=None)
    parser.add_argument("--rescore", type=Path, default=None, help="score and sweep an earlier results file")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="support_calls")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.rescore:
        earlier = json.loads(args.rescore.read_text(encoding="utf-8"))
        runs = earlier["runs"]
        live = {k: v for k, v in earlier["live"].items() if k not in ("overall", "calls")}
    else:
        wanted = set(filter(None, args.calls.split(",")))
        calls = [c for c in load_calls() if not wanted or c["id"] in wanted]
        runs, live = live_pass(calls, args.parallel, (args.topic_floor, args.suggestion_floor),
                               args.out / "support_calls_data")
        # The raw events first: a scoring failure must not cost the live pass (--rescore reads this).
        write_results(args.out, f"{args.name}_raw", {"live": live, "runs": runs})
    result = report(runs, live, time.monotonic() - started)
    path = write_results(args.out, args.name, result)
    plot(result, args.out / f"{args.name}.png")
    progress(f"support: wrote {path}")
    print(json.dumps({"live": result["live"]["overall"], "floors": live["floors"],
                      "chosen": {k: result["sweep"][k]["chosen"] for k in ("topic", "suggestion")}}, indent=2))


if __name__ == "__main__":
    main()

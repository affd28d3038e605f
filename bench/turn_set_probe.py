"""What Smart Turn says on the end-of-turn set: inside each pause and after each answer's end.

A quick look, not the benchmark of the turn-taking pipeline: for every item of
bench/turn_set.py, the model hears the audio from the file's start (0.5 s
before the voice) up to `--after` seconds after each mid pause's start and
after the answer's end (by energy), as the pipeline would hand it the turn so
far. A mid pause called complete is a false take of the turn; an answer end
called incomplete is a late one.

    python -m bench.turn_set_probe                 # probes at 0.2 s of silence
    python -m bench.turn_set_probe --after 0.2 0.5

Prints one line per probe and a table per pause kind; writes
bench/results/turn_set_probe.json.

The model's answer moves with where exactly the audio ends: on this set, one
sample more or less turned p = 0.39 into 0.16 (hes-lj0001-0002, 0.2 s into its
pause). So each probe is also asked at 10 and 20 ms either side, and the table
says how many probes flip across the threshold within those 40 ms.
"""

# MEASURED (python -m bench.turn_set_probe --after 0.2 0.5, 2026-12-06, this 2-core machine, Smart Turn v3.2 cpu, threshold 0.5):
#   called complete at 0.2 s     mid pauses   answer ends      at 0.5 s:  mid pauses   answer ends
#   mid_clause (all corpus)      7/9          9/9                          7/9          9/9
#   hesitation                   3/17         10/10                        5/17         10/10
#   list                         3/8          6/6                          4/8          6/6
#   complete                     -            13/13                        -            13/13
#   Of the mid pauses at 0.2 s: real joins 1/9, real list pauses 0/4, Piper list pauses 3/4, pauses around a Piper "um" 2/8.
#   Lowest answer end: done-piper-long p = 0.56. 4 of the 72 probes at 0.2 s flip across 0.5 within +-20 ms, 1 at 0.5 s.

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, machine_info, utc_timestamp, write_results
from bench.turn_set import DEFAULT_OUT, build_turn_set
from earshot.models.audio import SAMPLE_RATE, read_audio
from earshot.models.turn_model import EndOfTurnConfig, EndOfTurnModel

JITTER_S = (-0.02, -0.01, 0.01, 0.02)


def probe(model: EndOfTurnModel, pcm: np.ndarray, at_s: float) -> float:
    return model.predict(pcm[: int(round(at_s * SAMPLE_RATE))]).probability


def probe_with_jitter(model: EndOfTurnModel, pcm: np.ndarray, at_s: float) -> tuple[float, float, float]:
    """(p at `at_s`, lowest and highest p within 20 ms of it)."""
    nearby = [probe(model, pcm, at_s + d) for d in JITTER_S]
    p = probe(model, pcm, at_s)
    return p, min(nearby + [p]), max(nearby + [p])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=float, nargs="+", default=[0.2], help="seconds of silence before the model is asked")
    args = parser.parse_args(argv)
    config = EndOfTurnConfig()
    model = EndOfTurnModel.load(config)
    items = build_turn_set(DEFAULT_OUT)
    rows: list[dict[str, Any]] = []
    for item in items:
        pcm = np.frombuffer(read_audio(item.path), dtype=np.int16)
        points = [(p.kind, "pause", p.start_s) for p in item.pauses] + [(item.kind, "end", item.voice_end_s)]
        for kind, where, at in points:
            row = {"id": item.id, "item_kind": item.kind, "kind": kind, "where": where, "source": item.source, "voice_stop_s": at}
            for after in args.after:
                p, low, high = probe_with_jitter(model, pcm, at + after)
                row.update({f"p_{after}": round(p, 4), f"p_{after}_range": [round(low, 4), round(high, 4)]})
            rows.append(row)
            probes = "  ".join(
                f"+{a}s p={row[f'p_{a}']:.3f} [{row[f'p_{a}_range'][0]:.2f}-{row[f'p_{a}_range'][1]:.2f}]" for a in args.after
            )
            print(f"{item.id:26s} {where:5s} {kind:10s} at {at:6.2f} s  {probes}", flush=True)

    for after in args.after:
        print(f"\ncalled complete (p > {config.threshold}) at {after} s of silence (probes that flip within 20 ms):")
        print(f"{'kind':12s} {'mid pauses':>16s} {'answer ends':>16s}")
        table: dict[str, dict[str, list[tuple[bool, bool]]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            key = row["kind"] if row["where"] == "pause" else row["item_kind"]
            low, high = row[f"p_{after}_range"]
            table[key][row["where"]].append((row[f"p_{after}"] > config.threshold, low <= config.threshold < high))
        for kind in ("mid_clause", "hesitation", "list", "complete"):
            cells = []
            for where in ("pause", "end"):
                calls = table[kind][where]
                cells.append(f"{sum(c for c, _ in calls)}/{len(calls)} ({sum(f for _, f in calls)})" if calls else "-")
            print(f"{kind:12s} {cells[0]:>16s} {cells[1]:>16s}")
    write_results(RESULTS_DIR, "turn_set_probe", {
        "when": utc_timestamp(), "machine": machine_info(), "threshold": config.threshold, "after_s": args.after, "probes": rows,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

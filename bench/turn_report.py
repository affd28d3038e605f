"""The end-of-turn bench's table (stdout) and figure (turn.png), from its results dict (bench/turn_bench.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

# The live measures side by side: (label, path into a mode's summary, unit).
LIVE_ROWS = (
    ("answers", ("answers",), ""),
    ("end of voice -> final p50", ("final_from_voice_s", "p50"), "s"),
    ("end of voice -> final p95", ("final_from_voice_s", "p95"), "s"),
    ("  of them answer ends p50", ("final_from_voice_end_s", "p50"), "s"),
    ("pipeline's own final latency p50", ("final_pipeline_s", "p50"), "s"),
    ("pipeline's own final latency p95", ("final_pipeline_s", "p95"), "s"),
    ("answer end -> reply heard p50", ("reply_s", "p50"), "s"),
    ("answer end -> reply heard p95", ("reply_s", "p95"), "s"),
    ("takeovers (onsets inside answers)", ("takeovers",), ""),
    ("  designed pauses taken over", ("takeovers_at_mid",), ""),
    ("  rate over designed pauses", ("mid_takeover_rate",), ""),
    ("  at natural gaps", ("takeovers_at_gaps",), ""),
    ("turn ends inside answers (pipeline)", ("turn_ends_inside_answers",), ""),
    ("finals cut at a designed pause", ("cut_finals",), ""),
    ("  per minute of speech", ("cut_finals_per_min",), ""),
    ("model CPU per call p50", ("model_inference_s", "p50"), "s"),
    ("model CPU per call p95", ("model_inference_s", "p95"), "s"),
    ("model calls per answer", ("model_calls_per_answer",), ""),
    ("answers without a reply", ("answers_without_reply",), ""),
    ("answers whose quiet the VAD heard", ("answers_vad_late",), ""),
    ("wordless utterances (no final)", ("wordless_utterances",), ""),
)
CLEAN_ROWS = (
    ("answers", ("answers",), ""),
    ("end of voice -> final p50", ("final_from_voice_end_s", "p50"), "s"),
    ("end of voice -> final p95", ("final_from_voice_end_s", "p95"), "s"),
    ("answer end -> reply heard p50", ("reply_s", "p50"), "s"),
    ("answer end -> reply heard p95", ("reply_s", "p95"), "s"),
)
SWEEP_COLUMNS = (
    ("threshold", "{:g}"), ("checks_ms", "{}"), ("mid_takeovers", "{}"), ("mid_takeover_rate", "{:.3f}"),
    ("gap_takeovers", "{}"), ("answers_taken_over", "{}"), ("mid_cuts", "{}"), ("answers_cut", "{}"),
    ("ends_by_model", "{}"), ("ends_by_fallback", "{}"),
    ("end_latency_p50_s", "{:.3f}"), ("end_latency_p95_s", "{:.3f}"), ("end_latency_from_vad_p50_s", "{:.3f}"),
)


def dig(data: dict[str, Any], path: tuple[str, ...]) -> Optional[Any]:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def cell(value: Optional[Any], form: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and form == "{}":
        return f"{value:.3f}"
    return form.format(value)


def print_tables(report: dict[str, Any]) -> None:
    sweep = report.get("sweep")
    if sweep:
        print(f"\nSweep: {sweep['answers']} answers, {sweep['mid_pauses']} designed pauses, "
              f"model call p50 {cell(sweep['model_calls_inference_s']['p50'])} s; with the words check "
              f"(pauses whose words stop mid-phrase: {sweep.get('pauses_held_by_words')})")
        print("  ".join(f"{name:>14s}" for name, _ in SWEEP_COLUMNS))
        for row in sweep["table"]:
            print("  ".join(f"{cell(row[name], form):>14s}" for name, form in SWEEP_COLUMNS))
        base = sweep["silence_baseline"]
        print(f"{'silence timers':>14s}  {base['end_of_speech_ms']}+{base['turn_pause_ms']:<9d}  " + "  ".join(
            f"{cell(base.get(name), form):>14s}" for name, form in SWEEP_COLUMNS[2:]))
        for label, key in (("default, words check", "default_point"), ("default, model alone", "default_point_without_words")):
            row = sweep.get(key)
            if row:
                print(f"{label}: threshold {row['threshold']}, checks {row['checks_ms']} ms: taken over {row['mid_takeovers']} "
                      f"designed pauses, {row['gap_takeovers']} gaps, {row['answers_taken_over']} answers (turn ended inside "
                      f"{row['mid_cuts']} designed pauses, {row['gap_cuts']} gaps); {row['ends_by_fallback']} ends "
                      f"by fallback; p50 {cell(row['end_latency_p50_s'])} s, p95 {cell(row['end_latency_p95_s'])} s")
        chosen = sweep["chosen"]
        print(f"chosen: threshold {chosen['threshold']}, checks {chosen['checks_ms']} ms, fallback {chosen['fallback_ms']} ms: "
              f"{sweep['chosen_why']}")
        for row in sweep["fallbacks_at_chosen"]:
            print(f"  fallback {row['fallback_ms']} ms: {row['mid_takeovers']} designed pauses taken over, "
                  f"{row['ends_by_fallback']} ends by fallback, "
                  f"p50 {cell(row['end_latency_p50_s'])} s, p95 {cell(row['end_latency_p95_s'])} s")
    live = report.get("live")
    if live:
        modes = [m for m in live if isinstance(live[m], dict) and "summary" in live[m]]
        print(f"\nLive ({len(live.get('items', []))} answers per mode)")
        print(f"{'':38s}" + "".join(f"{m:>12s}" for m in modes))
        for label, path, unit in LIVE_ROWS:
            print(f"{label:38s}" + "".join(f"{cell(dig(live[m]['summary'], path)):>12s}" for m in modes))
        if all("clean" in live[m] for m in modes):
            print("Answers whose end every mode's VAD heard in time:")
            for label, path, unit in CLEAN_ROWS:
                print(f"  {label:36s}" + "".join(f"{cell(dig(live[m]['clean'], path)):>12s}" for m in modes))
        for m in modes:
            summary = live[m]["summary"]
            print(f"{m}: ended_by {summary['ended_by']}, clock lag bound {summary['clock_lag_bound_s']} s, "
                  f"errors {summary['errors']}")
    wer = report.get("wer")
    if wer:
        print(f"\nStreaming WER ({wer['files']} files, {wer['audio_s']} s, paced in real time)")
        for mode in ("silence", "model"):
            if mode in wer:
                kinds = ", ".join(f"{k} {v['wer']:.4f}" for k, v in wer[mode]["by_kind"].items())
                print(f"  {mode:8s} {wer[mode]['streaming']['wer']:.4f} ({kinds}; {wer[mode]['finals']} finals)")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    fig.suptitle(f"Earshot end of turn: model vs silence, {report['timestamp']}")
    sweep = report.get("sweep")
    if sweep:
        schedules = sorted({r["checks_ms"] for r in sweep["table"]}, key=lambda s: (len(s.split(",")), int(s.split(",")[0])))
        shown = [s for s in schedules if s in ("90", "150", "200", "300", "400") or "," in s]
        for checks in shown:
            rows = [r for r in sweep["table"] if r["checks_ms"] == checks]
            style = "--" if "," in checks else "-"
            axes[0].plot([r["threshold"] for r in rows], [r["end_latency_p50_s"] for r in rows], style, marker="o", label=checks)
            thresholds = [r["threshold"] for r in rows]
            axes[1].plot(thresholds, [r["mid_takeover_rate"] or 0 for r in rows], style, marker="o", label=checks)
        chosen = sweep["chosen"]
        axes[0].scatter([chosen["threshold"]], [chosen["end_latency_p50_s"]], s=160, facecolors="none", edgecolors="red",
                        label="chosen")
        axes[1].axhline(sweep["limits"]["max_mid_takeover_rate"], color="red", linestyle=":", label="limit")
        base = sweep["silence_baseline"]
        timers = f"silence {base['end_of_speech_ms']}+{base['turn_pause_ms']} ms"
        axes[0].axhline(base["end_latency_p50_s"], color="black", linestyle=":", label=timers)
        axes[1].axhline(base["mid_takeover_rate"] or 0, color="black", linestyle=":", label=timers)
        axes[0].set_title("Offline: end of voice -> decision, p50")
        axes[0].set_ylabel("seconds")
        axes[1].set_title("Offline: designed pauses taken over")
        axes[1].set_ylabel("share of designed pauses")
        for ax in axes[:2]:
            ax.set_xlabel("threshold")
            ax.legend(title="checks (ms)", fontsize=7)
    live = report.get("live")
    if live:
        modes = [m for m in ("silence", "model") if m in live]
        measures = (("final p50", ("summary", "final_from_voice_s", "p50")),
                    ("final p95", ("summary", "final_from_voice_s", "p95")),
                    ("reply p50", ("summary", "reply_s", "p50")), ("reply p95", ("summary", "reply_s", "p95")),
                    ("reply p50\nclean", ("clean", "reply_s", "p50")), ("reply p95\nclean", ("clean", "reply_s", "p95")))
        width = 0.8 / max(len(modes), 1)
        for i, mode in enumerate(modes):
            values = [dig(live[mode], p) or 0 for _, p in measures]
            taken = live[mode]["summary"]["takeovers"]
            axes[2].bar([x + i * width for x in range(len(measures))], values, width=width, label=f"{mode} ({taken} takeovers)")
        axes[2].set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(measures))])
        axes[2].set_xticklabels([m for m, _ in measures])
        axes[2].set_ylabel("seconds from the end of voice")
        axes[2].set_title("Live interviews (WebRTC, loopback)\nclean: answers whose end every VAD heard in time")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

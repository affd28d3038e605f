"""A load-test result as a terminal table, a PNG of plots and one self-contained HTML page.

    write_report(result, out_dir) -> loadtest.json, loadtest.png, loadtest.html

Missing values (a level where every call failed, no interviewer, no SLO) are
shown as "-" and left out of the plots, never guessed.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Optional

# (header, how to read the value from a level)
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("sessions", lambda lv: f"{lv['sessions']}{'+F' if lv.get('with_faults') else ''}"),
    ("ok/failed", lambda lv: f"{lv['calls']['completed']}/{lv['calls']['failed']}"),
    ("connect p95", lambda lv: _s(lv["latency"]["connect_s"]["p95"])),
    ("1st partial p50", lambda lv: _s(lv["latency"]["first_partial_s"]["p50"])),
    ("1st partial p95", lambda lv: _s(lv["latency"]["first_partial_s"]["p95"])),
    ("final p50", lambda lv: _s(lv["latency"]["final_latency_s"]["p50"])),
    ("final p95", lambda lv: _s(lv["latency"]["final_latency_s"]["p95"])),
    ("final p99", lambda lv: _s(lv["latency"]["final_latency_s"]["p99"])),
    ("partial lag p95", lambda lv: _s(lv["latency"]["partial_lag_s"]["p95"])),
    ("reply p50", lambda lv: _s(lv["latency"]["agent_reply_s"]["p50"])),
    ("reply p95", lambda lv: _s(lv["latency"]["agent_reply_s"]["p95"])),
    ("WER %", lambda lv: "-" if lv["wer"] is None else f"{100 * lv['wer']:.1f}"),
    ("CPU % mean", lambda lv: _n(lv["server"]["cpu_percent"]["mean"], 0)),
    ("queue max", lambda lv: _n(lv["server"]["asr_queue_depth"]["max"], 0)),
    ("errors", lambda lv: str(sum(lv["errors"].values()))),
    ("calls per instance", lambda lv: " ".join(str(n) for n in lv.get("instances", {}).values()) or "-"),
    ("SLO", lambda lv: {True: "pass", False: "FAIL", None: "-"}[lv.get("meets_slo")]),
)


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _n(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def level_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[read(level) for _, read in COLUMNS] for level in report["levels"]]


def verdict(report: dict[str, Any]) -> Optional[str]:
    """The capacity sentence, or None without an SLO."""
    slo, capacity = report.get("slo"), report.get("capacity")
    if not slo or capacity is None:
        return None
    rule = f"{slo['percentile']} {slo['measure']} <= {slo['limit_s']:g} s"
    if capacity["sessions"] is None:
        return f"capacity at {rule}: no level met the SLO"
    return f"capacity at {rule}: {capacity['sessions']} sessions"


def format_table(report: dict[str, Any]) -> str:
    headers = [header for header, _ in COLUMNS]
    rows = level_rows(report)
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if any(level.get("with_faults") for level in report["levels"]):
        lines.append("+F: this level ran beside the fault callers")
    for fault in report.get("faults", []):
        freed = "not freed" if fault["freed_after_s"] is None else f"freed after {fault['freed_after_s']:.1f} s"
        lines.append(f"fault {fault['kind']}: {fault['error'] or freed}")
    if (line := verdict(report)) is not None:
        lines.append(line)
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------------
def write_plots(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted((lv for lv in report["levels"] if not lv.get("with_faults")), key=lambda lv: lv["sessions"])
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    fig.suptitle(f"Earshot load test, {report['started_at']} ({report['config'].get('mode', '')})")
    _plot_latency(axes[0, 0], levels, report)
    _plot_server(axes[0, 1], levels)
    _plot_timeline(axes[1, 0], max(levels, key=lambda lv: lv["sessions"], default=None))
    _plot_quality(axes[1, 1], levels)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _no_data(ax, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _series(levels: list[dict[str, Any]], read) -> tuple[list[int], list[float]]:
    points = [(lv["sessions"], read(lv)) for lv in levels]
    points = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in points], [y for _, y in points]


def _plot_latency(ax, levels: list[dict[str, Any]], report: dict[str, Any]) -> None:
    title = "latency percentiles vs concurrent sessions"
    lines = [
        ("final_latency_s", "p50", "final p50", "-o"),
        ("final_latency_s", "p95", "final p95", "-o"),
        ("final_latency_s", "p99", "final p99", "--o"),
        ("first_partial_s", "p95", "first partial p95", "-s"),
        ("partial_lag_s", "p95", "partial lag p95", "-^"),
        ("agent_reply_s", "p95", "agent reply p95", "-d"),
    ]
    drawn = 0
    for measure, percentile, label, style in lines:
        xs, ys = _series(levels, lambda lv: lv["latency"][measure][percentile])
        if xs:
            ax.plot(xs, ys, style, label=label)
            drawn += 1
    if not drawn:
        _no_data(ax, title)
        return
    slo = report.get("slo")
    if slo:
        ax.axhline(slo["limit_s"], color="red", linestyle=":", label=f"SLO {slo['percentile']} {slo['measure']}")
    capacity = (report.get("capacity") or {}).get("sessions")
    if capacity:
        ax.axvline(capacity, color="green", linestyle=":", label=f"capacity {capacity}")
    ax.set(title=title, xlabel="concurrent sessions", ylabel="seconds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _plot_server(ax, levels: list[dict[str, Any]]) -> None:
    title = "server CPU and memory vs sessions"
    xs, mean = _series(levels, lambda lv: lv["server"]["cpu_percent"]["mean"])
    if not xs:
        _no_data(ax, title)
        return
    ax.plot(xs, mean, "-o", label="CPU mean")
    ax.plot(*_series(levels, lambda lv: lv["server"]["cpu_percent"]["p95"]), "--o", label="CPU p95")
    ax.plot(*_series(levels, lambda lv: lv.get("loadgen_cpu_percent")), ":x", label="load generator CPU")
    ax.set(title=title, xlabel="concurrent sessions", ylabel="CPU % (100 = one core)")
    memory = ax.twinx()
    memory.plot(*_series(levels, lambda lv: lv["server"]["rss_mib"]["max"]), "-s", color="tab:purple", label="RSS max")
    memory.set_ylabel("RSS MiB")
    ax.legend(loc="upper left", fontsize=8)
    memory.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def _plot_timeline(ax, level: Optional[dict[str, Any]]) -> None:
    if level is None or not level["timeline"]:
        _no_data(ax, "time series of one level")
        return
    ax.set_title(f"time series at {level['sessions']} sessions")
    t = [p["t"] for p in level["timeline"]]
    ax.step(t, [p["live_sessions"] for p in level["timeline"]], where="post", label="live sessions")
    ax.step(t, [p["asr_queue_depth"] for p in level["timeline"]], where="post", label="ASR queue depth")
    finals = level["final_points"]
    if finals:
        ax.scatter([p["t"] for p in finals], [p["latency_s"] for p in finals], s=12, color="black", label="final latency (s)")
    ax.set(xlabel="seconds since the level started", ylabel="count / seconds")
    cpu = ax.twinx()
    cpu.plot(t, [p["cpu_percent"] for p in level["timeline"]], color="tab:red", alpha=0.6, label="server CPU %")
    cpu.set_ylabel("CPU %")
    ax.legend(loc="upper left", fontsize=8)
    cpu.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


def _plot_quality(ax, levels: list[dict[str, Any]]) -> None:
    if not levels:
        _no_data(ax, "WER and errors per level")
        return
    labels = [str(lv["sessions"]) for lv in levels]
    positions = range(len(levels))
    ax.bar([p - 0.2 for p in positions], [100 * (lv["wer"] or 0) for lv in levels], width=0.4, label="WER %")
    ax.bar([p + 0.2 for p in positions], [sum(lv["errors"].values()) for lv in levels], width=0.4, label="errors", color="tab:red")
    ax.set_xticks(list(positions), labels)
    ax.set(title="WER and errors per level", xlabel="concurrent sessions")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")


# --- HTML ------------------------------------------------------------------------------------------
PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
.verdict { font-size: 1.3em; font-weight: bold; padding: 0.5em; background: #eef6ee; display: inline-block; }
.fail { color: #b00; } img { max-width: 100%; }
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(report: dict[str, Any], path: Path, png_name: str) -> None:
    config = report["config"]
    png = path.parent / png_name
    image = f'<img alt="plots" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">' if png.is_file() else ""
    parts = [
        f"<h1>Earshot load test, {html.escape(report['started_at'])}</h1>",
        f"<p>{html.escape(config['url'])}: levels {html.escape(str(config['levels']))}, {config['duration_s']:g} s of speech per caller, "
        f"ramp-up {config['ramp_up_s']:g} s, mode {html.escape(config['mode'])}, audio {html.escape(config['audio'])}</p>",
    ]
    if (line := verdict(report)) is not None:
        parts.append(f'<p class="verdict">{html.escape(line)}</p>')
    parts.append(_table([h for h, _ in COLUMNS], level_rows(report)))
    parts.append(image)
    for level in report["levels"]:
        calls = [
            [c["call"], c["session_id"] or "-", _s(c["connect_s"]), _s(c["first_partial_s"]), c["finals"], c["utterances_sent"],
             "-" if c["wer"] is None else f"{100 * c['wer']:.1f}", _s(c["final_latency_p95_s"]), ", ".join(c["errors"]) or "-"]
            for c in level["per_call"]
        ]
        errors = ", ".join(f"{code}: {count}" for code, count in level["errors"].items()) or "none"
        parts.append(
            f"<details><summary>{level['sessions']} sessions{' beside the faults' if level.get('with_faults') else ''}: "
            f"errors {html.escape(errors)}</summary>"
            + _table(["call", "session", "connect", "first partial", "finals", "clips", "WER %", "final p95", "errors"], calls)
            + "</details>"
        )
    if report.get("faults"):
        parts.append("<h2>Fault callers</h2>")
        rows = [[f["kind"], f["session_id"] or "-", _s(f["freed_after_s"]), f["error"] or "-", f["notes"]] for f in report["faults"]]
        parts.append(_table(["fault", "session", "freed after (s)", "error", "notes"], rows))
    page = f"<!doctype html><html><head><meta charset=utf-8><title>Earshot load test</title><style>{PAGE_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path.write_text(page)


def write_report(report: dict[str, Any], out_dir: Path, stem: str = "loadtest") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("json", "png", "html")}
    paths["json"].write_text(json.dumps(report, indent=2))
    write_plots(report, paths["png"])
    write_html(report, paths["html"], paths["png"].name)
    return paths

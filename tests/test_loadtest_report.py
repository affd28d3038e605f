"""The load-test report: table, plots and HTML from a result, including levels with nothing measured."""

import copy
import json

from earshot.loadtest.report import format_table, write_report
from earshot.loadtest.stats import percentiles

EMPTY = percentiles([])


def level(sessions, finals, failed=0, with_faults=False):
    latency = percentiles(finals)
    return {
        "sessions": sessions, "with_faults": with_faults, "wall_s": 40.0, "loadgen_cpu_percent": 12.0,
        "calls": {"started": sessions, "connected": sessions - failed, "completed": sessions - failed, "failed": failed},
        "errors": {"connect_failed": failed} if failed else {},
        "latency": {"connect_s": percentiles([0.05] * (sessions - failed)), "first_partial_s": latency,
                    "final_latency_s": latency, "partial_lag_s": latency, "agent_reply_s": EMPTY},
        "utterances": {"sent": len(finals), "finalized": len(finals), "missed": 0},
        "wer": 0.031 if finals else None,
        "server": {"cpu_percent": percentiles([80, 120, 150]) if finals else EMPTY,
                   "rss_mib": {"start": 900.0, "end": 910.0, "max": 915.0},
                   "asr_queue_depth": {"max": sessions, "p95": sessions - 1}, "event_loop_lag_p95_s": 0.005,
                   "live_sessions_max": sessions, "live_sessions_after": 0, "scrape_failures": 0},
        "meets_slo": bool(finals) and max(finals) <= 1.5,
        "timeline": [{"t": t, "live_sessions": sessions, "asr_queue_depth": 1, "cpu_percent": 100.0, "rss_mib": 910.0} for t in range(1, 10)],
        "final_points": [{"t": i + 1.0, "latency_s": v, "call": 0} for i, v in enumerate(finals)],
        "per_call": [{"call": 0, "session_id": "<s1>", "connect_s": 0.05, "first_partial_s": 0.8, "finals": len(finals),
                      "utterances_sent": len(finals), "wer": 0.03, "final_latency_p95_s": 1.0, "errors": []}],
    }


REPORT = {
    "schema": "earshot-loadtest/1", "started_at": "2026-11-23T23:00:00+00:00", "finished_at": "2026-11-23T23:10:00+00:00",
    "config": {"url": "http://127.0.0.1:8000", "levels": [1, 4, 8], "duration_s": 60.0, "ramp_up_s": 5.0, "mode": "transcribe",
               "audio": "corpus/utterances"},
    "machine": {"cpus": 2}, "slo": {"measure": "final_latency_s", "percentile": "p95", "limit_s": 1.5},
    "capacity": {"sessions": 4, "tried": [1, 4, 8]},
    "levels": [level(1, [0.7, 0.8]), level(4, [0.8, 1.1, 1.2]), level(8, [], failed=8), level(2, [0.9], with_faults=True)],
    "faults": [{"kind": "vanish", "session_id": "ab", "error": None, "freed_after_s": 4.2, "notes": "killed"},
               {"kind": "no_ice", "session_id": None, "error": "OSError: refused", "freed_after_s": None, "notes": ""}],
    "server_after": {"live_sessions": 0, "rss_mib": 905.0, "asr_queue_depth": 0},
}


def test_report_files_table_and_html(tmp_path):
    paths = write_report(copy.deepcopy(REPORT), tmp_path)
    assert json.loads(paths["json"].read_text()) == REPORT
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page = paths["html"].read_text()
    assert "capacity at p95 final_latency_s &lt;= 1.5 s: 4 sessions" in page
    assert "&lt;s1&gt;" in page and "<s1>" not in page  # strings are escaped
    assert "data:image/png;base64," in page and "Fault callers" in page

    table = format_table(REPORT).splitlines()
    rows = [line for line in table if line.strip() and line.split()[0] in ("1", "4", "8", "2+F")]
    assert len(rows) == 4
    failed_row = next(line for line in rows if line.split()[0] == "8")
    assert failed_row.split()[1] == "0/8" and failed_row.split().count("-") >= 8
    assert table[-1] == "capacity at p95 final_latency_s <= 1.5 s: 4 sessions"
    assert "fault no_ice: OSError: refused" in table


def test_report_without_slo_or_data(tmp_path):
    report = copy.deepcopy(REPORT)
    report.update(slo=None, capacity=None, faults=[], levels=[level(2, [], failed=2)])
    paths = write_report(report, tmp_path, stem="empty")
    assert paths["png"].is_file() and "capacity" not in format_table(report)
    assert "capacity" not in paths["html"].read_text().split("<table>")[0]

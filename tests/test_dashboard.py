"""The Grafana dashboards ask only for what Earshot exports, from data sources that are provisioned.

Every PromQL expression of every panel is read for the metric names it
selects; each must be a series that `ServerMetrics` renders at the server's
/metrics, or (the managers' dashboard, earshot-calls.json) that the analytics
worker's `AnalyticsCollector` renders from the totals of a real call's facts, by
its type: a counter `x` is selected as `x_total`, a histogram `x` as
`x_bucket`, `x_sum` or `x_count`, a gauge by its own name. A panel that
names a metric that does not exist (a typo, a rename, `_total` on a
histogram) would show "No data" for ever; here it fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from earshot.agents.call_facts import CallMeta, facts_from_summary
from earshot.server.analytics_metrics import AnalyticsCollector, increments
from earshot.server.metrics import ServerMetrics

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "deploy" / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OPERATIONS, CALLS = GRAFANA / "dashboards" / "earshot.json", GRAFANA / "dashboards" / "earshot-calls.json"

# What an operator must find on the dashboard (the issue "Watching it").
WATCHED = (
    "earshot_live_sessions",
    "earshot_sessions_rejected_total",
    "earshot_reconnects_total",
    "earshot_final_latency_seconds_bucket",
    "earshot_asr_queue_depth",
    "earshot_asr_queue_wait_seconds_bucket",
    "earshot_reply_latency_seconds_bucket",
    "earshot_llm_first_token_seconds_bucket",
    "earshot_tts_first_audio_seconds_bucket",
    "earshot_barge_in_stop_seconds_bucket",
    "earshot_intent_inference_seconds_bucket",
    "earshot_end_of_turn_seconds_bucket",
    "earshot_event_loop_lag_seconds_bucket",
    "earshot_errors_total",
)

# What a manager must find on the calls dashboard (issue 17): intents and topics over time, the
# sentiment trend, handle times, escalation reasons, suggestions used against shown.
MANAGED = (
    "earshot_analytics_calls_total",
    "earshot_analytics_calls_by_topic_total",
    "earshot_analytics_intents_total",
    "earshot_analytics_sentiment_sum",
    "earshot_analytics_sentiment_count",
    "earshot_analytics_handle_time_seconds_bucket",
    "earshot_analytics_escalations_total",
    "earshot_analytics_suggestions_total",
)

# PromQL words that look like names but select nothing.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in _NAME.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isalnum() or before in "._$":  # 1e3, 5m, a Grafana $variable
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def series_names(rendered: bytes) -> set[str]:
    """Every series name a /metrics text can carry, by each family's type."""
    names = set()
    for family in text_string_to_metric_families(rendered.decode()):
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("", "_sum", "_count", "_created")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def exported_series() -> set[str]:
    """Every series name the server's /metrics can carry, from ServerMetrics' own render."""
    return series_names(ServerMetrics(live_sessions=lambda: 0, asr_queue_depth=lambda: 0).render())


def escalated_call_summary() -> dict:
    """A stored assist summary (agents/assist_agent.py's shape) of a short call that escalates, with a suggestion used."""
    line = lambda seq, speaker, start, text, intents, utterance: {  # noqa: E731
        "seq": seq, "speaker": speaker, "start": start, "end": start + 2.0, "text": text, "utterance_id": utterance,
        "intents": [{"name": name, "score": 0.9} for name in intents]}
    return {
        "transcript": [
            line(0, "customer", 0.5, "I was charged twice this month", ["billing_inquiry", "complaint"], 1),
            line(1, "agent", 3.0, "I can refund the duplicate charge today", ["greeting_other"], 2),
            line(2, "customer", 6.0, "I want to speak to your manager", ["escalation"], 3),
        ],
        "metrics": {"call_s": 75.0, "talk_share": {"agent": 0.4, "customer": 0.6}, "silence_s": 30.0, "overlap_s": 0.5,
                    "interruptions": {"agent": 0, "customer": 1}},
        "topic": {"topic": "billing_dispute", "label": "Billing dispute", "score": 0.71},
        "topic_history": [{"at_s": 2.5, "topic": "billing_dispute", "label": "Billing dispute"}],
        "sentiment": {"scores": [{"seq": 0, "score": -0.6}, {"seq": 2, "score": -0.8}], "mean": -0.7, "trend_label": "worsening"},
        "suggestions": [{"utterance_id": 1, "text": "I can refund the duplicate charge today", "score": 0.8,
                         "source": "knowledge", "knowledge_ids": ["billing-refund"]}],
    }


def analytics_series() -> tuple[set[str], bytes]:
    """The series the analytics worker's /metrics carries: its collector, fed what a real call's facts add."""
    meta = CallMeta("0123456789abcdef", "assist", "agent-1", "blue", 1_700_000_000.0, 1_700_000_075.0)
    facts = facts_from_summary(meta, escalated_call_summary(), lambda a, b: float(a == b), 0.6)
    collector = AnalyticsCollector()
    collector.update(increments(facts.to_dict()))
    rendered = collector.render()
    return series_names(rendered), rendered


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panels(panel))
    return found


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every Prometheus query of the dashboard, its variables' queries included."""
    found = [(p.get("title", ""), t["expr"]) for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            found.append((f"${variable['name']}", re.sub(r"^\w+\((.*)\)$", r"\1", query)))  # label_values(expr, label)
    return found


def unknown_metrics(dashboard: dict, exported: set[str]) -> list[tuple[str, str]]:
    return sorted({(title, name) for title, expr in expressions(dashboard) for name in metric_names(expr) if name not in exported})


def datasource_refs(node: object) -> list[object]:
    """Every `datasource` value anywhere in the dashboard: panels, targets, variables, annotations."""
    if isinstance(node, dict):
        refs = [node["datasource"]] if "datasource" in node else []
        return refs + [ref for value in node.values() for ref in datasource_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in datasource_refs(value)]
    return []


def provisioned_datasources() -> list[dict]:
    return [d for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml")) for d in yaml.safe_load(f.read_text())["datasources"]]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_series() | analytics_series()[0]


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_the_operators_and_the_managers_dashboards():
    assert DASHBOARDS == sorted([OPERATIONS, CALLS])
    assert len({load(path)["uid"] for path in DASHBOARDS}) == len(DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_metric_a_panel_asks_for_is_exported(path: Path, exported: set[str]):
    dashboard = load(path)
    assert expressions(dashboard), "no queries at all"
    for title, expr in expressions(dashboard):
        assert metric_names(expr), f"{title}: {expr!r} selects no metric"
    assert unknown_metrics(dashboard, exported) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_datasource_is_provisioned(path: Path):
    provisioned = provisioned_datasources()
    uids = {d["uid"] for d in provisioned}
    assert len(uids) == len(provisioned), "every provisioned data source needs a uid of its own"
    refs = datasource_refs(load(path))
    assert refs, "the panels name no data source"
    for ref in refs:
        # A bare name or a ${DS_...} input would only resolve on import by hand: provisioning needs the uid.
        assert isinstance(ref, dict) and ref.get("uid") in uids, ref
        assert ref.get("type") == next(d["type"] for d in provisioned if d["uid"] == ref["uid"]), ref


def test_the_operator_sees_what_the_issue_asks_for():
    selected = {name for path in DASHBOARDS for _, expr in expressions(load(path)) for name in metric_names(expr)}
    assert sorted(set(WATCHED) - selected) == []
    for path in DASHBOARDS:
        assert not re.search(r"[^\w]\$\{?DS_", path.read_text()), "a data source input: provisioning needs the uid"
        titles = [p["title"] for p in panels(load(path)) if p.get("type") != "row"]
        assert len(titles) == len(set(titles)), "two panels of one title"
        assert all(p.get("description") for p in panels(load(path)) if p.get("type") != "row"), "a panel says what it shows"


def test_the_manager_sees_what_the_issue_asks_for():
    selected = {name for _, expr in expressions(load(CALLS)) for name in metric_names(expr)}
    assert sorted(set(MANAGED) - selected) == []
    assert all(name.startswith("earshot_analytics_") for name in selected), "the calls dashboard reads the worker's metrics"


def test_every_calls_query_takes_the_max_over_the_workers():
    """Every worker reports the same cluster-wide totals: a sum over the workers would count each call once per worker."""
    for title, expr in expressions(load(CALLS)):
        selectors = re.findall(r"earshot_analytics_\w+", expr)
        assert expr.count("max without (instance)") == len(selectors), f"{title}: {expr}"


def test_the_worker_exports_every_family_the_calls_dashboard_reads():
    """The collector fed one escalated call with a used suggestion: each family the panels read has samples."""
    names, rendered = analytics_series()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(rendered.decode()) for s in f.samples}
    assert samples[("earshot_analytics_calls_total", (("mode", "assist"),))] == 1
    assert samples[("earshot_analytics_calls_by_topic_total", (("topic", "Billing dispute"),))] == 1
    assert samples[("earshot_analytics_escalations_total", (("reason", "Billing dispute"),))] == 1
    assert samples[("earshot_analytics_intents_total", (("intent", "escalation"),))] == 1
    assert samples[("earshot_analytics_suggestions_total", (("outcome", "used"),))] == 1
    assert samples[("earshot_analytics_sentiment_bucket", (("le", "-0.5"),))] == 1  # mean -0.7
    assert samples[("earshot_analytics_handle_time_seconds_bucket", (("le", "60.0"),))] == 0
    assert samples[("earshot_analytics_handle_time_seconds_bucket", (("le", "120.0"),))] == 1  # 75 s
    assert set(MANAGED) <= names
    # A label matcher of a panel names a label value the worker writes (mode, outcome, a bucket's bound).
    values = {(name, label, value) for name, labels in samples for label, value in labels}
    for title, expr in expressions(load(CALLS)):
        for name, matchers in re.findall(r"(earshot_analytics_\w+)\{([^}]*)\}", expr):
            for label, value in re.findall(r'(\w+)="([^"]*)"', matchers):
                assert (name, label, value) in values, f"{title}: {name}{{{label}={value!r}}} matches nothing"


# --- the checker checks ------------------------------------------------------------------------


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(earshot_asr_queue_wait_seconds_bucket{kind="final",job=~"ear.*"}'
        "[$__rate_interval]))) / ignoring(kind) group_left earshot_live_sessions offset 5m + 1e3 * sum(x_total) without (code)"
    )
    assert metric_names(expr) == {"earshot_asr_queue_wait_seconds_bucket", "earshot_live_sessions", "x_total"}
    assert metric_names('{__name__="earshot_live_sessions"}') == set()  # a selector by label only: nothing to check by name
    assert metric_names("sum(rate(process_cpu_seconds_total[5m])) and on(instance) up") == {"process_cpu_seconds_total", "up"}


@pytest.mark.parametrize(
    "expr, unknown",
    [
        ("sum(earshot_live_sessions)", []),
        ("sum(rate(earshot_reply_latency_seconds_count[5m]))", []),
        ("sum(rate(earshot_no_such_thing_total[5m]))", ["earshot_no_such_thing_total"]),
        ("sum(rate(earshot_errors[5m]))", ["earshot_errors"]),  # a counter is read as x_total
        ("sum(rate(earshot_final_latency_seconds_total[5m]))", ["earshot_final_latency_seconds_total"]),  # a histogram has none
        ("histogram_quantile(0.5, sum by (le) (rate(earshot_final_latency_seconds[5m])))", ["earshot_final_latency_seconds"]),
        ("earshot_live_sessions_total", ["earshot_live_sessions_total"]),  # a gauge has no suffix
    ],
)
def test_a_panel_naming_a_metric_that_does_not_exist_fails(expr: str, unknown: list[str], exported: set[str]):
    dashboard = {"panels": [{"type": "row", "panels": [{"title": "p", "targets": [{"expr": expr}]}]}]}
    assert [name for _, name in unknown_metrics(dashboard, exported)] == unknown

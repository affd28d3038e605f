// The manager's calls page (calls.html): ended calls from GET api/calls, searched and filtered
// there (q, topic, intent, agent, a time range), listed in a table and drawn in five charts
// (charts.js). Each row is export_row of the call's stored facts (agents/call_facts.py).
//
// Access: with --auth on the page sends this tab's credential (credential.js); a 401 shows the
// "Access key" field, and the list loads again once a key is entered. What a role sees is the
// server's business (server/access.py, "calls read"). Every value from the server goes in as text.

import { ApiError } from "./api.js";
import { barChart, histogram, legend, stackedColumns, trendPlot } from "./charts.js";
import { askForCredential, identityCredential } from "./credential.js";
import { byRole, byTestId, capitalise, formatClock, h, intentChip, intentName, moodOf, num, signed } from "./page.js";

const LIMIT = 1000; // the API's most; the charts describe what the table lists
const SEARCH_DELAY_MS = 300;
const COLUMNS = 12; // of the intents-over-time chart
const HANDLE_STEPS_S = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const TOP_REASONS = 8;

const ERROR_HINTS = {
  401: "This server needs an access key: enter it above (a supervisor's shows the team's calls).",
  403: "Your role may not see calls: agents see their own, supervisors their team's, admins all. Enter another key above.",
  503: "The server cannot read the calls right now. Try again in a minute.",
  0: "Check your connection, then reload the page.",
};

const controls = {
  search: byTestId("calls-search"),
  range: byTestId("calls-range"),
  topic: byTestId("calls-topic"),
  intent: byTestId("calls-intent"),
  agent: byTestId("calls-agent"),
};
const seen = { topic: new Map(), intent: new Map(), agent: new Map() }; // value -> label, every value ever listed
let latest = 0; // the newest request: an older answer arriving late is dropped

// ---------------------------------------------------------------- loading

async function fetchCalls(params) {
  const credential = identityCredential();
  let response;
  try {
    response = await fetch(`api/calls?${params}`, { headers: credential ? { Authorization: `Bearer ${credential}` } : {} });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached.");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload?.error ?? {};
    throw new ApiError(response.status, error.code ?? "http_error", error.message ?? `HTTP ${response.status}`);
  }
  if (!Array.isArray(payload?.calls)) throw new ApiError(500, "unreadable", "The server sent calls this page cannot read.");
  return payload;
}

function query() {
  const until = Date.now() / 1000;
  const since = until - Number(controls.range.value);
  const params = new URLSearchParams({ since: since.toFixed(0), until: until.toFixed(0), limit: String(LIMIT) });
  for (const name of ["topic", "intent", "agent"]) if (controls[name].value) params.set(name, controls[name].value);
  const q = controls.search.value.trim();
  if (q) params.set("q", q);
  return { params, since, until };
}

async function load() {
  const request = (latest += 1);
  const { params, since, until } = query();
  document.body.dataset.state = "loading";
  status("Loading calls…");
  try {
    const payload = await fetchCalls(params);
    if (request !== latest) return;
    show(payload.calls, { since, until, filtered: [...params.keys()].some((k) => !["since", "until", "limit"].includes(k)) });
  } catch (error) {
    if (request !== latest) return;
    if (!(error instanceof ApiError)) console.error(error);
    showError(error instanceof ApiError ? error : new ApiError(500, "bug", "The calls could not be displayed."));
  }
}

function status(text) {
  const node = byTestId("calls-status");
  node.textContent = text;
  node.hidden = !text;
}

function showError(error) {
  document.body.dataset.state = "error";
  status("");
  byRole("calls").hidden = true;
  byTestId("calls-empty").hidden = true;
  const box = byTestId("calls-error");
  box.hidden = false;
  box.dataset.status = String(error.status);
  const text = capitalise(error.message);
  byRole("error-message").textContent = error.status ? `${text} (HTTP ${error.status})` : text;
  byRole("error-hint").textContent = ERROR_HINTS[error.status] ?? "Try reloading the page.";
  if (error.status === 401 || error.status === 403) askForCredential();
}

// ---------------------------------------------------------------- the page

function show(calls, { since, until, filtered }) {
  byTestId("calls-error").hidden = true;
  rememberOptions(calls);
  const count = calls.length;
  status(count >= LIMIT ? `The newest ${LIMIT} calls (more ended in this time).` : "");
  const empty = byTestId("calls-empty");
  empty.hidden = count > 0;
  byRole("calls").hidden = count === 0;
  empty.textContent = filtered ? "No call matches the search and filters in this time range."
    : "No call ended in this time range. Calls appear here a few seconds after they end.";
  byRole("count").textContent = count ? `(${count})` : "";
  renderTable(calls);
  renderCharts(calls, since, until);
  document.body.dataset.state = count ? "ready" : "empty";
}

const topicName = (call) => (call.topic_label === "unclear" ? "Unclear" : call.topic_label || call.topic || "–");
const intentsOf = (call) => String(call.intents ?? "").split(";").filter(Boolean);
const when = (t) => new Date(t * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

function rememberOptions(calls) {
  for (const call of calls) {
    if (call.topic_label) seen.topic.set(call.topic_label, topicName(call));
    for (const intent of intentsOf(call)) seen.intent.set(intent, intentName(intent));
    if (call.agent) seen.agent.set(call.agent, call.agent);
  }
  for (const [name, values] of Object.entries(seen)) {
    const select = controls[name];
    const chosen = select.value;
    const options = [...values].sort((a, b) => a[1].localeCompare(b[1]));
    select.replaceChildren(select.options[0], ...options.map(([value, label]) => h("option", { value, text: label })));
    select.value = chosen;
  }
}

function renderTable(calls) {
  const body = byTestId("calls-table").tBodies[0];
  body.replaceChildren(...calls.map((call) => {
    const sentiment = num(call.sentiment_mean);
    const summary = call.mode === "assist"
      ? h("a", { href: `sessions/${encodeURIComponent(call.session_id)}/summary`, "data-testid": "summary-link", text: "Summary" })
      : h("span", { class: "muted", text: call.mode === "interview" ? "Interview" : "–" });
    return h("tr", { "data-session-id": call.session_id },
      h("td", { "data-col": "time" }, h("time", { datetime: new Date(call.ended_at * 1000).toISOString(), text: when(call.ended_at) })),
      h("td", { "data-col": "agent", text: call.agent || "–" }),
      h("td", { "data-col": "topic", text: topicName(call) }),
      h("td", { "data-col": "intents" }, h("span", { class: "as-chips" }, intentsOf(call).map((i) => intentChip(i)))),
      h("td", { "data-col": "sentiment", class: `num mood ${sentiment === null ? "" : moodOf(sentiment)}`,
        text: sentiment === null ? "–" : signed(sentiment) }),
      h("td", { "data-col": "duration", class: "num", "data-seconds": call.handle_time_s, text: formatClock(call.handle_time_s) }),
      h("td", { "data-col": "escalated", class: call.escalated ? "escalated" : "",
        text: call.escalated ? `Yes${call.escalation_reason ? `: ${call.escalation_reason}` : ""}` : "No" }),
      h("td", { "data-col": "summary" }, summary));
  }));
}

// ---------------------------------------------------------------- charts

function chart(testid, node) {
  byTestId(testid).querySelector("[data-role=chart]").replaceChildren(node);
}

const none = (text) => h("p", { class: "muted chart-empty", text });

function tally(values) {
  const counts = new Map();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return [...counts].map(([label, value]) => ({ label, value }));
}

function timeFormat(since, until) {
  const span = until - since;
  return (t) => new Date(t * 1000).toLocaleString(undefined, span <= 86400
    ? { hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric", hour: span <= 7 * 86400 ? "2-digit" : undefined });
}

function renderCharts(calls, since, until) {
  const format = timeFormat(since, until);
  chart("chart-topics", barChart(tally(calls.filter((c) => c.mode === "assist").map(topicName)), {
    label: "Calls per topic", className: "topics" }));
  chart("chart-intents", intentsOverTime(calls, since, until, format));
  const scored = calls.filter((c) => num(c.sentiment_mean) !== null);
  chart("chart-sentiment", scored.length
    ? trendPlot(scored.map((c) => ({ t: c.ended_at, value: c.sentiment_mean, label: c.session_id,
        title: `${when(c.ended_at)} · ${topicName(c)} · ${signed(c.sentiment_mean)}` })),
      { label: "Mean customer sentiment of each call, over time", from: since, to: until, format })
    : none("No call had customer words scored for sentiment."));
  chart("chart-handle", histogram(handleBins(calls.map((c) => num(c.handle_time_s) ?? 0)), {
    label: "Handle time of the calls", xLabel: "Handle time" }));
  const reasons = tally(calls.filter((c) => c.escalated).map((c) => c.escalation_reason || "unknown"))
    .sort((a, b) => b.value - a.value).slice(0, TOP_REASONS);
  chart("chart-escalations", reasons.length
    ? barChart(reasons, { label: "Escalated calls by reason", className: "escalations" })
    : none("No call escalated."));
}

function intentsOverTime(calls, since, until, format) {
  const names = [...new Set(calls.flatMap(intentsOf))];
  if (!names.length) return none("No intent was recognised in these calls.");
  const totals = tally(calls.flatMap(intentsOf)).sort((a, b) => b.value - a.value);
  const series = totals.map((t) => ({ key: t.label, label: intentName(t.label) }));
  const width = (until - since) / COLUMNS;
  const columns = Array.from({ length: COLUMNS }, (_, i) => ({ from: since + i * width, to: since + (i + 1) * width, counts: {} }));
  for (const call of calls) {
    const column = columns[Math.min(COLUMNS - 1, Math.max(0, Math.floor((call.ended_at - since) / width)))];
    for (const intent of intentsOf(call)) column.counts[intent] = (column.counts[intent] ?? 0) + 1;
  }
  const holder = h("div");
  holder.append(stackedColumns(columns, series, { label: "Calls in which each intent was heard, over time", from: since,
    to: until, format, yLabel: "Calls" }), legend(series, h));
  return holder;
}

const shortTime = (s) => (s < 60 ? `${s}s` : s < 3600 ? `${s / 60}m` : `${s / 3600}h`);

/** Handle times in up to 8 equal bins of a round width (5 s … 1 h). */
export function handleBins(seconds) {
  const max = Math.max(1, ...seconds);
  const step = HANDLE_STEPS_S.find((s) => max / s <= 8) ?? 3600;
  const count = Math.max(1, Math.ceil((max + 1e-9) / step));
  const bins = Array.from({ length: count }, (_, i) => ({ from: i * step, to: (i + 1) * step, count: 0 }));
  for (const s of seconds) bins[Math.min(count - 1, Math.floor(s / step))].count += 1;
  return bins.map((b) => ({ ...b, label: `${shortTime(b.from)}–${shortTime(b.to)}` }));
}

// ---------------------------------------------------------------- wiring

let searchTimer = 0;
controls.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(load, SEARCH_DELAY_MS);
});
for (const name of ["range", "topic", "intent", "agent"]) controls[name].addEventListener("change", load);
byTestId("calls-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  load();
});
// credential.js's "Access key" form stores the key and removes itself; then list again with it.
document.addEventListener("submit", (event) => {
  if (event.target?.dataset?.testid === "access-key") setTimeout(load, 0);
});

load();

// The call summary page of an agent-assist call, served at /sessions/{id}/summary.
//
// The token comes from the URL fragment (#token=...), which browsers never send to the
// server, or from sessionStorage / localStorage where the overlay left it. summary-model.js
// reads the JSON (defensively: any part may be missing); this module draws its sections.
// Everything said on the call is user content: it goes in with textContent, never as HTML.

import {
  MOOD_NAMES,
  PageError,
  TREND_SIGNS,
  byRole as $,
  fetchSessionDocument,
  fixed,
  formatClock,
  h,
  intentChip,
  moodLabel,
  moodOf,
  num,
  openSessionPage,
  signed,
  speakerName,
  svg,
  talkShare,
} from "./page.js";
import { normalise, obj } from "./summary-model.js";

// Right after the call ends the summary may still be being stored: ask again a few times.
const NOT_YET_RETRIES = 5;
const NOT_YET_DELAY_MS = 1500;

const ERROR_HINTS = {
  401: "The link's access token is missing or wrong. Open the summary from the overlay's link.",
  403: "The link's access token is missing or wrong. Open the summary from the overlay's link.",
  404: "There is no summary for this session: it may have expired, or it was not an agent-assist call.",
  503: "The server cannot read the summary right now. Try again in a minute.",
  0: "Check your connection, then reload the page.",
};

// ---------------------------------------------------------------- formatting

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function fmtDuration(seconds) {
  const s = num(seconds);
  if (s === null) return "–";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(s / 60);
  return `${minutes} min ${Math.round(s - minutes * 60)} s`;
}

// ---------------------------------------------------------------- loading

async function fetchWhenReady(sessionId, token) {
  for (let tries = 0; ; tries += 1) {
    try {
      return await fetchSessionDocument(sessionId, token, "summary", () => true);
    } catch (error) {
      const notYet = error instanceof PageError && error.status === 404 && error.code === "no_summary";
      if (!notYet || tries >= NOT_YET_RETRIES) throw error;
      $("loading").textContent = "The call is still being summarised…";
      await new Promise((resolve) => setTimeout(resolve, NOT_YET_DELAY_MS));
    }
  }
}

// ---------------------------------------------------------------- sections

function renderHeader(model) {
  const bits = [];
  if (model.startedAt) {
    bits.push(new Date(model.startedAt * 1000).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" }));
  }
  if (model.duration !== null) bits.push(fmtDuration(model.duration));
  const speakers = model.speakers.length ? model.speakers : [...new Set(model.transcript.map((l) => l.speaker))];
  if (speakers.length) bits.push(speakers.map(speakerName).join(" and "));
  $("meta").textContent = bits.join(" · ");
}

function renderFacts(model) {
  $("duration").textContent = model.duration === null ? "–" : formatClock(model.duration);
  $("duration-note").textContent = `${plural(model.transcript.length, "line")} transcribed`;

  const topic = model.topic;
  $("topic").textContent = topic ? topic.label || String(topic.topic ?? "").replaceAll("_", " ") || "–" : "Not determined";
  const topicBits = [];
  if (topic && num(topic.score) !== null) topicBits.push(`match ${fixed(topic.score, 2)}`);
  if (topic?.source) topicBits.push(topic.source === "llm" ? "named by the AI" : "by similarity");
  const changes = model.topicHistory.length;
  if (changes > 1) {
    const path = model.topicHistory.map((t) => t.label || t.topic).filter(Boolean);
    topicBits.push(`went ${path.join(" → ")}`);
  }
  $("topic-note").textContent = topic ? topicBits.join(" · ") : "Too little was said to tell.";

  if (model.average === null) {
    $("mood").textContent = "–";
    $("mood-note").textContent = "The customer said nothing scored.";
  } else {
    const mood = moodOf(model.average);
    $("mood").textContent = `${MOOD_NAMES[mood]} ${signed(model.average)}`;
    $("mood").dataset.mood = mood;
    const trend = TREND_SIGNS[model.trendLabel] ? model.trendLabel : null;
    $("mood-note").textContent = `average of ${plural(model.scores.length, "line")}` +
      (trend ? ` · ended ${TREND_SIGNS[trend]} ${trend}` : "");
  }

  $("suggestions").textContent = String(model.suggestionCount ?? 0);
  $("suggestions-note").textContent = model.suggestionCount
    ? `for the customer's lines${model.llmSuggestions ? ` · ${model.llmSuggestions} drafted by the AI` : ""}`
    : "None were needed.";
}

function renderIntents(model) {
  const holder = $("intents");
  const row = (label, counts, speaker = "") => {
    const entries = Object.entries(obj(counts)).filter(([, n]) => num(n)).sort((a, b) => b[1] - a[1]);
    if (!entries.length) return null;
    return h("div", { class: "intent-row", "data-speaker": speaker },
      h("h4", { text: label }),
      h("div", { class: "as-chips" }, entries.map(([name, n]) => intentChip(name, { count: n }))));
  };
  const rows = Object.keys(model.bySpeaker).length
    ? Object.entries(model.bySpeaker).map(([speaker, counts]) => row(`${speakerName(speaker)} lines`, counts, speaker))
    : [row("Lines of the call", model.counts)];
  const shown = rows.filter(Boolean);
  if (shown.length && model.correctedLines) {
    shown.push(h("p", { class: "muted", "data-role": "intents-corrected",
      text: `Counted after the agent's corrections (${plural(model.correctedLines, "line")}).` }));
  }
  holder.replaceChildren(...(shown.length ? shown
    : [h("p", { class: "muted", text: "No intent was recognised in this call." })]));
}

/** Customer sentiment over the call: -1..1 against time into the call (or line number). */
export function sentimentPlot(scores, duration) {
  const W = 720, H = 240;
  const M = { top: 14, right: 18, bottom: 42, left: 52 };
  const iw = W - M.left - M.right, ih = H - M.top - M.bottom;
  const timed = scores.every((s) => num(s.start) !== null);
  const xs = scores.map((s, i) => (timed ? s.start : i + 1));
  const xMax = timed ? Math.max(10, duration ?? 0, ...xs) : Math.max(2, xs.length);
  const xMin = timed ? 0 : 1;
  const x = (v) => M.left + ((v - xMin) / (xMax - xMin)) * iw;
  const y = (v) => M.top + ((1 - Math.max(-1, Math.min(1, v))) / 2) * ih;

  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "sentiment-plot", "data-role": "sentiment-svg", role: "img",
    "aria-label": `Customer sentiment over the call, ${scores.length} lines from ${signed(scores[0]?.score)} ` +
      `to ${signed(scores[scores.length - 1]?.score)}`,
  });
  root.append(svg("rect", { class: "band-pos", x: M.left, y: y(1), width: iw, height: y(0) - y(1) }));
  root.append(svg("rect", { class: "band-neg", x: M.left, y: y(0), width: iw, height: y(-1) - y(0) }));
  for (const v of [-1, -0.5, 0, 0.5, 1]) {
    root.append(svg("line", { class: v === 0 ? "zero" : "grid", x1: M.left, x2: M.left + iw, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "tick", x: M.left - 8, y: y(v) + 4, "text-anchor": "end" }, v > 0 ? `+${v}` : String(v)));
  }
  const ticks = timed ? niceTicks(xMax) : integerTicks(xMax);
  for (const t of ticks) {
    root.append(svg("text", { class: "tick", x: x(t), y: M.top + ih + 18, "text-anchor": "middle" },
      timed ? formatClock(t) : String(t)));
  }
  root.append(svg("text", { class: "axis-label", x: M.left + iw / 2, y: H - 6, "text-anchor": "middle" },
    timed ? "Time into the call (minutes:seconds)" : "Customer line"));
  root.append(svg("text", {
    class: "axis-label", x: 14, y: M.top + ih / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${M.top + ih / 2})`,
  }, "Sentiment"));

  if (scores.length > 1) {
    root.append(svg("polyline", {
      class: "line", points: scores.map((s, i) => `${x(xs[i]).toFixed(1)},${y(s.score).toFixed(1)}`).join(" "),
    }));
  }
  scores.forEach((s, i) => {
    const mood = moodLabel(s.label, s.score);
    const dot = svg("circle", { class: `point ${mood}`, cx: x(xs[i]), cy: y(s.score), r: 4.5 });
    const said = s.line?.text ? `: “${s.line.text.slice(0, 80)}${s.line.text.length > 80 ? "…" : ""}”` : "";
    dot.append(svg("title", {}, `${timed ? formatClock(s.start) : `line ${i + 1}`} ${signed(s.score)} (${mood})${said}`));
    root.append(dot);
  });
  return root;
}

function niceTicks(max) {
  const raw = max / 6;
  const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];
  const step = steps.find((s) => s >= raw) ?? 3600;
  const ticks = [];
  for (let t = 0; t <= max + 1e-9; t += step) ticks.push(t);
  return ticks;
}

function integerTicks(max) {
  const step = Math.max(1, Math.ceil(max / 10));
  const ticks = [];
  for (let t = 1; t <= max; t += step) ticks.push(t);
  return ticks;
}

function renderSentiment(model) {
  const holder = $("sentiment-plot");
  const caption = $("sentiment-caption");
  if (!model.scores.length) {
    holder.replaceChildren(h("p", { class: "muted", text: "The customer said nothing, so there is no sentiment to plot." }));
    caption.replaceChildren();
    return;
  }
  holder.replaceChildren(sentimentPlot(model.scores, model.duration));
  const trend = TREND_SIGNS[model.trendLabel] ? model.trendLabel : null;
  const first = model.scores[0].score, last = model.scores[model.scores.length - 1].score;
  caption.replaceChildren(
    h("span", { class: "legend-item", text: `One point per customer line, −1 (negative) to +1 (positive).` }),
    h("span", { class: "legend-item", text: `Average ${signed(model.average)}; from ${signed(first)} to ${signed(last)}.` }),
    trend ? h("span", { class: "legend-item", text: `Trend at the end: ${TREND_SIGNS[trend]} ${trend}` +
      (model.trend !== null ? ` (${signed(model.trend)})` : "") }) : null,
  );
}

function renderMetrics(model) {
  const m = model.metrics;
  const holder = $("metrics");
  if (!Object.keys(m).length) {
    holder.replaceChildren(h("p", { class: "muted", text: "No metrics were recorded for this call." }));
    return;
  }
  const share = talkShare(obj(m.talk_share));
  const shareBlock = h("div", { class: "share-block" },
    h("div", { class: "as-share", role: "img", "data-empty": String(share.empty), "aria-label": share.label ?? "No speech" },
      h("span", { class: "as-share-agent", style: { width: `${share.agentPct}%` } }),
      h("span", { class: "as-share-customer", style: { width: `${share.customerPct}%` } })),
    h("p", { class: "as-share-legend" },
      h("span", { class: "agent" }, "Agent ", h("b", { text: share.agentText })),
      h("span", { class: "customer" }, "Customer ", h("b", { text: share.customerText }))));

  const per = (key, format) => {
    const values = obj(m[key]);
    return [format(values.agent), format(values.customer)];
  };
  const perSpeaker = [
    ["Talk time", per("talk_s", (v) => (num(v) === null ? "–" : fmtDuration(v)))],
    ["Share of talk", per("talk_share", (v) => (num(v) === null ? "–" : `${Math.round(v * 100)}%`))],
    ["Words per second", per("talk_rate_wps", (v) => fixed(v, 2))],
    ["Interruptions", per("interruptions", (v) => (num(v) === null ? "–" : String(v)))],
  ];
  const callWide = [
    ["Call length", fmtDuration(m.call_s ?? model.duration)],
    ["Speech (anyone)", fmtDuration(m.speech_s)],
    ["Silence", fmtDuration(m.silence_s)],
    ["Speech : silence", num(m.speech_to_silence) === null ? "–" : `${fixed(m.speech_to_silence, 2)} : 1`],
    ["Both talking (overlap)", fmtDuration(m.overlap_s)],
    ["Long silences", num(m.long_silences) === null ? "–" : String(m.long_silences)],
    ["Longest silence", fmtDuration(m.longest_silence_s)],
  ];
  holder.replaceChildren(
    shareBlock,
    h("table", { class: "metrics-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "" }),
        h("th", { scope: "col", class: "num", text: "Agent" }), h("th", { scope: "col", class: "num", text: "Customer" }))),
      h("tbody", {}, perSpeaker.map(([label, [a, c]]) =>
        h("tr", {}, h("th", { scope: "row", text: label }), h("td", { class: "num", text: a }), h("td", { class: "num", text: c }))))),
    h("h4", { text: "The whole call" }),
    h("table", { class: "metrics-table" },
      h("tbody", {}, callWide.map(([label, value]) =>
        h("tr", {}, h("th", { scope: "row", text: label }), h("td", { class: "num", text: value }))))),
  );
}

function renderTranscript(model) {
  const holder = $("transcript");
  if (!model.transcript.length) {
    holder.replaceChildren(h("li", { class: "muted", text: "Nothing was transcribed in this call." }));
    return;
  }
  const sentimentOf = new Map(model.scores.filter((s) => s.line).map((s) => [s.line, s]));
  holder.replaceChildren(...model.transcript.map((line) => {
    const s = sentimentOf.get(line);
    const reply = line.speaker === "customer" ? model.replies.get(line.utterance_id) : null;
    const item = h("li", { class: "call-line", "data-speaker": line.speaker, "data-seq": line.seq },
      h("div", {},
        h("span", { class: "who", text: speakerName(line.speaker) }),
        line.start === null ? null : h("time", { text: formatClock(line.start), title: `${line.start.toFixed(1)} s into the call` })),
      h("div", {},
        h("p", { class: "line-text", text: line.text }),
        line.intents.length || line.corrected || s
          ? h("div", { class: "as-chips" }, lineIntents(line),
              s ? h("span", { class: `sentiment-tag ${moodLabel(s.label, s.score)}`,
                text: `mood ${signed(s.score)}` }) : null)
          : null,
        reply ? h("p", { class: "question-stats muted" }, "Suggested reply",
          reply.source === "llm" ? " (AI draft)" : " (knowledge base)", ": ", h("q", { text: reply.text })) : null),
    );
    if (line.corrected) item.dataset.corrected = "1";
    return item;
  }));
}

/** A line's intent chips: the agent's correction where there is one (marked, the model's labels in its title), else the model's. */
function lineIntents(line) {
  if (!line.corrected) return line.intents.map((i) => intentChip(i.name, { score: num(i.score) ?? undefined }));
  const said = line.intents.map((i) => i.name).join(", ") || "none";
  return [
    ...line.corrected.map((name) => intentChip(name)),
    h("span", { class: "as-chips-label corrected-note", text: "corrected by the agent", title: `The model said: ${said}` }),
  ];
}

export function renderSummary(summary) {
  const model = normalise(summary);
  renderHeader(model);
  renderFacts(model);
  renderIntents(model);
  renderSentiment(model);
  renderMetrics(model);
  renderTranscript(model);
  $("loading").hidden = true;
  $("summary").hidden = false;
  document.body.dataset.state = "ready";
}

openSessionPage({
  page: "summary",
  what: "summary",
  noSession: "This address does not name a call.",
  errorHints: ERROR_HINTS,
  load: fetchWhenReady,
  render: renderSummary,
});

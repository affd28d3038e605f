// The assist overlay's cards: what the server makes of the call as it goes. The
// suggested reply, the customer's mood (with a sparkline), the topic, the intents of
// the customer's last line and over the call, and the call metrics.
// Everything said on the call goes in with textContent, never as HTML.

import { lineText } from "./assist-view.js";
import {
  MOOD_NAMES,
  TREND_SIGNS,
  byRole,
  byTestId,
  fixed,
  formatClock,
  h,
  intentChip,
  moodLabel,
  num,
  signed,
  svg,
  talkShare,
} from "./page.js";

const SPARK_POINTS = 40; // customer scores the sparkline shows, newest last
const SOURCE_NAMES = { knowledge: "Knowledge base", llm: "AI draft" };

const el = {
  suggestion: byTestId("assist-suggestion"),
  suggestionText: byRole("suggestion-text"),
  suggestionSource: byRole("suggestion-source"),
  suggestionRefining: byRole("suggestion-refining"),
  suggestionMeta: byRole("suggestion-meta"),
  copy: byRole("copy"),
  sentiment: byTestId("assist-sentiment"),
  mood: byRole("mood"),
  trend: byRole("trend"),
  meter: byRole("meter"),
  meterMark: byRole("meter-mark"),
  spark: byRole("spark"),
  topic: byTestId("assist-topic"),
  topicLabel: byRole("topic-label"),
  topicMeta: byRole("topic-meta"),
  intentsCurrent: byRole("intents-current"),
  intentsCounts: byRole("intents-counts"),
  share: byRole("share"),
  shareAgent: byRole("share-agent"),
  shareCustomer: byRole("share-customer"),
  shareAgentPct: byRole("share-agent-pct"),
  shareCustomerPct: byRole("share-customer-pct"),
  m: {
    call: byRole("m-call"),
    talk: byRole("m-talk"),
    rate: byRole("m-rate"),
    interrupts: byRole("m-interrupts"),
    silence: byRole("m-silence"),
    long: byRole("m-long"),
    overlap: byRole("m-overlap"),
    ratio: byRole("m-ratio"),
  },
};

// What the cards have taken in so far.
const taken = {
  labelsOf: new Map(), // customer utterance_id -> its labels (names) in the counts: the head's, or the agent's correction
  current: null, // the customer utterance whose final intents "Customer wants" shows (null: none, or provisional ones)
  scores: new Map(), // customer utterance_id -> sentiment score (insertion order = call order)
  suggestionFor: -1, // the customer utterance the shown suggestion answers
};

/** Short durations in seconds, long ones as a clock. */
function formatSeconds(seconds) {
  const s = num(seconds);
  if (s === null) return "–";
  return s < 60 ? `${s.toFixed(1)} s` : formatClock(s);
}

const pair = (map, format) => `${format(map?.agent)} / ${format(map?.customer)}`;
const shorten = (text, max) => (text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text);

export function initCards() {
  el.copy.addEventListener("click", copySuggestion);
}

// ---- intents ----------------------------------------------------------------------------

/** The intents of the customer's last line; provisional ones come from words still being said. */
export function showCurrentIntents(labels, provisional = false, corrected = false) {
  el.intentsCurrent.replaceChildren(
    ...(labels.length
      ? labels.map((l) => intentChip(l.name, { score: l.score, provisional }))
      : [h("span", { class: "muted", text: "No clear intent in the last line" })]),
  );
  el.intentsCurrent.dataset.provisional = String(provisional);
  if (corrected) el.intentsCurrent.dataset.corrected = "1";
  else delete el.intentsCurrent.dataset.corrected;
  if (provisional) taken.current = null;
}

/**
 * A customer line's final intents: shown as the current ones and counted once for the call.
 * `corrected`: the labels are the agent's correction of the line (assist.js passes them for a corrected line).
 */
export function showCustomerIntents(event, corrected = false) {
  const labels = event.labels ?? [];
  showCurrentIntents(labels, false, corrected);
  taken.current = event.utterance_id;
  if (taken.labelsOf.has(event.utterance_id) && !corrected) return;
  taken.labelsOf.set(event.utterance_id, labels.map((l) => l.name));
  showCounts();
}

/**
 * The agent corrected a customer line (a click, or the read-back after a reconnect): its labels `names` count
 * instead of the head's, and "Customer wants" shows them when that line is the one it shows.
 */
export function correctCustomerIntents(utteranceId, names) {
  if (taken.current === utteranceId) showCurrentIntents(names.map((name) => ({ name })), false, true);
  if (!taken.labelsOf.has(utteranceId)) return; // not counted yet: its intent event counts the corrected labels
  taken.labelsOf.set(utteranceId, [...names]);
  showCounts();
}

function showCounts() {
  const counts = new Map();
  for (const names of taken.labelsOf.values()) for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  el.intentsCounts.replaceChildren(
    ...(sorted.length ? [h("span", { class: "as-chips-label", text: "This call:" })] : []),
    ...sorted.map(([name, count]) => intentChip(name, { count })),
  );
}

// ---- sentiment ----------------------------------------------------------------------------

export function showSentiment(event) {
  const score = num(event.score);
  if (score === null) return;
  taken.scores.set(event.utterance_id ?? taken.scores.size, score);
  const label = moodLabel(event.label, score);
  el.sentiment.dataset.label = label;
  el.mood.textContent = `${MOOD_NAMES[label]} ${signed(score)}`;

  const trendLabel = TREND_SIGNS[event.trend_label] ? event.trend_label : "steady";
  el.trend.dataset.trend = trendLabel;
  el.trend.textContent = `${TREND_SIGNS[trendLabel]} ${trendLabel}`;
  el.trend.title = `Trend ${signed(event.trend)} over the customer's recent lines`;

  const clamped = Math.max(-1, Math.min(1, score));
  el.meter.setAttribute("aria-valuenow", clamped.toFixed(2));
  el.meterMark.hidden = false;
  el.meterMark.style.left = `${((clamped + 1) / 2) * 100}%`;

  let history = [...taken.scores.values()];
  if (history.length < 2 && Array.isArray(event.history) && event.history.length > history.length) history = event.history;
  el.spark.replaceChildren(sparkline(history.slice(-SPARK_POINTS), label));
}

/** A small line of scores in -1..1, oldest left; the newest point is dotted. */
export function sparkline(scores, label = "neutral") {
  const W = 160, H = 36, pad = 3;
  const root = svg("svg", {
    class: "as-sparkline", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `Customer sentiment over the call: ${scores.map((s) => s.toFixed(2)).join(", ")}`,
  });
  const y = (s) => pad + ((1 - Math.max(-1, Math.min(1, s))) / 2) * (H - 2 * pad);
  const x = (i) => (scores.length < 2 ? W / 2 : pad + (i / (scores.length - 1)) * (W - 2 * pad));
  root.append(svg("line", { class: "zero", x1: 0, x2: W, y1: y(0), y2: y(0) }));
  if (scores.length > 1) {
    root.append(svg("polyline", {
      class: "line", points: scores.map((s, i) => `${x(i).toFixed(1)},${y(s).toFixed(1)}`).join(" "),
    }));
  }
  if (scores.length) {
    const last = scores.length - 1;
    root.append(svg("circle", { class: `dot ${label}`, cx: x(last), cy: y(scores[last]), r: 2.6 }));
  }
  return root;
}

// ---- topic ------------------------------------------------------------------------------

export function showTopic(event) {
  const unclear = event.state === "unclear"; // no topic matched well enough: say so rather than guess
  const label = unclear ? "Topic unclear" : event.label || (event.topic ? String(event.topic).replaceAll("_", " ") : "");
  if (!label) return;
  el.topicLabel.textContent = label;
  el.topic.dataset.topic = unclear ? "" : event.topic ?? "";
  el.topic.dataset.state = unclear ? "unclear" : "named";
  const bits = [];
  if (unclear && num(event.score) !== null) bits.push(`best match only ${fixed(event.score, 2)}`);
  else if (num(event.score) !== null) bits.push(`match ${fixed(event.score, 2)}`);
  if (event.source) bits.push(event.source === "llm" ? "named by the AI" : "by similarity");
  const others = (event.candidates ?? []).filter((c) => c.name !== event.topic).slice(0, 2);
  if (unclear) bits.length = 1; // no runners-up: nothing was named
  else if (others.length) bits.push(`also: ${others.map((c) => String(c.name).replaceAll("_", " ")).join(", ")}`);
  el.topicMeta.textContent = bits.join(" · ");
}

// ---- suggestion ----------------------------------------------------------------------------

export function showSuggestion(event) {
  const utteranceId = num(event.utterance_id) ?? taken.suggestionFor;
  if (utteranceId < taken.suggestionFor) return; // an answer to older words: the shown one is newer
  if (event.withheld) return showWithheld(event, utteranceId);
  if (!event.text) return;
  taken.suggestionFor = utteranceId;
  const changed = el.suggestionText.textContent !== event.text;
  el.suggestionText.textContent = event.text;
  el.suggestion.dataset.state = event.final === false ? "refining" : "final";
  el.suggestion.dataset.source = event.source ?? "";
  el.suggestionSource.hidden = !event.source;
  el.suggestionSource.textContent = SOURCE_NAMES[event.source] ?? event.source ?? "";
  el.suggestionSource.dataset.source = event.source ?? "";
  el.suggestionSource.title =
    event.source === "llm" ? "Drafted by the language model from the knowledge base" : "An answer from the knowledge base";
  el.suggestionRefining.hidden = event.final !== false;
  el.copy.disabled = false;

  const customerSaid = lineText("customer", utteranceId);
  const meta = [];
  if (customerSaid !== null) meta.push(`re: “${shorten(customerSaid, 60)}”`);
  const ids = (event.knowledge_ids ?? []).filter(Boolean);
  if (ids.length) meta.push(`KB ${ids.join(", ")}`);
  const latency = num(event.latency_s);
  if (latency !== null) meta.push(latency < 1 ? `${Math.round(latency * 1000)} ms` : `${latency.toFixed(1)} s`);
  el.suggestionMeta.textContent = meta.join(" · ");

  if (changed) {
    el.suggestion.classList.remove("fresh");
    void el.suggestion.offsetWidth; // restart the highlight animation
    el.suggestion.classList.add("fresh");
  }
}

// Nothing in the knowledge base matched the customer's words well enough: no suggestion rather than a guess.
function showWithheld(event, utteranceId) {
  taken.suggestionFor = utteranceId;
  el.suggestionText.textContent = "No confident suggestion for this line.";
  el.suggestion.dataset.state = "withheld";
  el.suggestion.dataset.source = "";
  el.suggestion.classList.remove("fresh");
  el.suggestionSource.hidden = true;
  el.suggestionRefining.hidden = true;
  el.copy.disabled = true;
  const customerSaid = lineText("customer", utteranceId);
  const meta = [];
  if (customerSaid !== null) meta.push(`re: “${shorten(customerSaid, 60)}”`);
  if (num(event.score) !== null) meta.push(`best match only ${fixed(event.score, 2)}`);
  el.suggestionMeta.textContent = meta.join(" · ");
}

async function copySuggestion() {
  const text = el.suggestionText.textContent.trim();
  if (!text || el.suggestion.dataset.state === "empty") return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Older browsers, or no clipboard permission: select the text and copy that.
    const range = document.createRange();
    range.selectNodeContents(el.suggestionText);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
  }
  el.copy.textContent = ok ? "Copied" : "Select & copy";
  setTimeout(() => (el.copy.textContent = "Copy"), 1500);
}

// ---- metrics --------------------------------------------------------------------------------

export function showMetrics(event) {
  const share = talkShare(event.talk_share);
  el.shareAgent.style.width = `${share.agentPct}%`;
  el.shareCustomer.style.width = `${share.customerPct}%`;
  el.share.dataset.empty = String(share.empty);
  el.shareAgentPct.textContent = share.agentText;
  el.shareCustomerPct.textContent = share.customerText;
  el.share.setAttribute("aria-label", share.label ?? "Talk share: no speech yet");

  el.m.call.textContent = formatClock(event.call_s);
  el.m.talk.textContent = pair(event.talk_s, (s) => (num(s) === null ? "–" : formatClock(s)));
  el.m.rate.textContent = pair(event.talk_rate_wps, (v) => fixed(v, 1));
  el.m.interrupts.textContent = pair(event.interruptions, (v) => (num(v) === null ? "–" : String(v)));
  el.m.silence.textContent = formatSeconds(event.silence_s);
  const longest = num(event.longest_silence_s);
  el.m.long.textContent = `${event.long_silences ?? 0}${longest ? ` (max ${formatSeconds(longest)})` : ""}`;
  el.m.overlap.textContent = formatSeconds(event.overlap_s);
  el.m.ratio.textContent = num(event.speech_to_silence) === null ? "–" : `${fixed(event.speech_to_silence, 1)} : 1`;
}

// ---- reset --------------------------------------------------------------------------------------

/** Every card as it is before a call. */
export function clearCards() {
  taken.labelsOf.clear();
  taken.current = null;
  taken.scores.clear();
  taken.suggestionFor = -1;

  el.suggestion.dataset.state = "empty";
  el.suggestion.classList.remove("fresh");
  el.suggestionText.textContent = "A reply appears here after the customer speaks.";
  el.suggestionSource.hidden = true;
  el.suggestionRefining.hidden = true;
  el.suggestionMeta.textContent = "";
  el.copy.disabled = true;

  el.sentiment.dataset.label = "none";
  el.mood.textContent = "—";
  el.trend.textContent = "";
  el.trend.dataset.trend = "none";
  el.meterMark.hidden = true;
  el.meter.setAttribute("aria-valuenow", "0");
  el.spark.replaceChildren(h("span", { class: "muted", text: "Waiting for the customer" }));

  el.topicLabel.textContent = "Not yet known";
  el.topicMeta.textContent = "";
  delete el.topic.dataset.topic;
  delete el.topic.dataset.state;

  el.intentsCurrent.replaceChildren(h("span", { class: "muted", text: "Nothing yet" }));
  delete el.intentsCurrent.dataset.corrected;
  el.intentsCounts.replaceChildren();

  showMetrics({ call_s: 0 });
}

// The call summary as the summary page shows it: the server's JSON read defensively
// (any part may be missing: it gets a default), plus what the page derives from it
// (each customer line's sentiment, the last reply suggested for it, the agent's correction of its intents).

import { num } from "./page.js";

export const obj = (value) => (value && typeof value === "object" && !Array.isArray(value) ? value : {});
export const list = (value) => (Array.isArray(value) ? value : []);

/** The summary's parts, with defaults for whatever is missing. */
export function normalise(summary) {
  const metrics = obj(summary.metrics);
  // The agents' intent corrections (the same items as GET .../corrections): a line's labels after them.
  const corrected = new Map(list(summary.corrections).filter((c) => c && Array.isArray(c.labels))
    .map((c) => [`${c.speaker ?? ""}:${c.utterance_id}`, c.labels.map(String)]));
  const transcript = list(summary.transcript)
    .filter((line) => line && typeof line === "object")
    .map((line) => ({
      seq: line.seq,
      speaker: line.speaker ?? "",
      utterance_id: line.utterance_id,
      text: String(line.text ?? ""),
      start: num(line.start) ?? num(line.start_s),
      end: num(line.end) ?? num(line.end_s),
      intents: list(line.intents).map((i) => (typeof i === "string" ? { name: i } : obj(i))).filter((i) => i.name),
      corrected: corrected.get(`${line.speaker ?? ""}:${line.utterance_id}`) ?? null, // null: as the model said
    }));
  transcript.sort((a, b) => (a.start ?? 0) - (b.start ?? 0) || (a.seq ?? 0) - (b.seq ?? 0));

  const ends = transcript.map((line) => line.end).filter((end) => end !== null);
  const duration = num(summary.duration_s) ?? num(metrics.call_s) ?? (ends.length ? Math.max(...ends) : null);

  const sentiment = obj(summary.sentiment);
  const customerBySeq = new Map(transcript.filter((l) => l.speaker === "customer").map((l) => [l.seq, l]));
  const customerByUtterance = new Map(transcript.filter((l) => l.speaker === "customer").map((l) => [l.utterance_id, l]));
  const scores = list(sentiment.scores)
    .map((s, index) => {
      if (typeof s === "number") return { score: s, index };
      const line = customerBySeq.get(s?.seq) ?? customerByUtterance.get(s?.utterance_id);
      return { ...obj(s), index, start: num(s?.start) ?? num(s?.start_s) ?? line?.start ?? null, line };
    })
    .filter((s) => num(s.score) !== null);
  const average = num(sentiment.average) ?? num(sentiment.mean) ??
    (scores.length ? scores.reduce((sum, s) => sum + s.score, 0) / scores.length : null);

  const intents = obj(summary.intents);
  let counts = obj(intents.counts);
  if (!Object.keys(counts).length) {
    // No counts: make them from the transcript's lines.
    counts = {};
    for (const line of transcript) for (const { name } of line.intents) counts[name] = (counts[name] ?? 0) + 1;
  }
  // The counts the page shows are after the agents' corrections, as the lines are.
  const correctedLines = transcript.filter((line) => line.corrected);
  counts = afterCorrections(counts, correctedLines);
  const bySpeaker = Object.fromEntries(Object.entries(obj(intents.by_speaker)).map(([speaker, c]) =>
    [speaker, afterCorrections(obj(c), correctedLines.filter((line) => line.speaker === speaker))]));

  const suggestions = Array.isArray(summary.suggestions) ? summary.suggestions.filter((s) => s && s.text) : [];
  const suggestionCount = typeof summary.suggestions === "number" ? summary.suggestions
    : new Set(suggestions.map((s) => s.utterance_id)).size;
  // The last word on each customer line: the final suggestion (or the newest one).
  const replies = new Map();
  for (const s of suggestions) {
    const current = replies.get(s.utterance_id);
    if (!current || s.final !== false || current.final === false) replies.set(s.utterance_id, s);
  }

  return {
    sessionId: summary.session_id,
    startedAt: num(summary.started_at),
    speakers: list(summary.speakers),
    duration,
    topic: summary.topic && typeof summary.topic === "object" ? summary.topic : null,
    topicHistory: list(summary.topic_history),
    counts,
    bySpeaker,
    correctedLines: correctedLines.length,
    scores,
    average,
    trend: num(sentiment.trend),
    trendLabel: sentiment.trend_label,
    metrics,
    suggestionCount,
    llmSuggestions: suggestions.filter((s) => s.source === "llm").length,
    replies,
    transcript,
  };
}

/** Intent counts (label -> lines) with each corrected line counted under its corrected labels, not the model's. */
export function afterCorrections(counts, correctedLines) {
  const out = { ...counts };
  for (const line of correctedLines) {
    for (const { name } of line.intents) out[name] = Math.max(0, (num(out[name]) ?? 0) - 1);
    for (const name of line.corrected) out[name] = (num(out[name]) ?? 0) + 1;
  }
  return out;
}

// The assist overlay's status line, controls and transcript: who said what, the words
// still being said (partials), the intents of each line, and the notices of trouble
// the call survives. assist-cards.js shows what the server makes of the call.
// Everything said on the call goes in with textContent, never as HTML.

import { correctedNames, initFeedback, readBack, renderLineIntents, showCorrected } from "./assist-feedback.js";
import { byRole, byTestId, formatClock, h, intentChip, num, showStatus, speakerName } from "./page.js";

const el = {
  status: byTestId("assist-status"),
  clock: byRole("clock"),
  start: byTestId("assist-start"),
  stop: byTestId("assist-stop"),
  summaryLink: byTestId("assist-summary-link"),
  notices: byRole("notices"),
  transcript: byTestId("assist-transcript"),
  transcriptEmpty: byRole("transcript-empty"),
  lines: byRole("lines"),
  partials: byRole("partials"),
  speaking: { agent: byRole("speaking-agent"), customer: byRole("speaking-customer") },
};

export const controls = { start: el.start, stop: el.stop };

// What the transcript shows so far.
const shown = {
  lines: new Map(), // speaker:utterance_id -> the final's <li>
  pendingIntents: new Map(), // speaker:utterance_id -> the intent event that came before its final
  pendingCorrections: new Map(), // speaker:utterance_id -> labels read back before its final was shown
  corrected: () => {}, // told each corrected line's labels (initCorrections)
  partials: {}, // speaker -> {utteranceId, node}
};

export const lineKey = (speaker, utteranceId) => `${speaker ?? ""}:${utteranceId}`;

// ---- status and controls ----------------------------------------------------------------

/** tone: info | live | error | done (only changes the colour) */
export const setStatus = (text, tone = "info") => showStatus(el.status, text, tone);

/** Start while no call runs, Stop while one does. */
export function showState(state, active) {
  document.body.dataset.state = state;
  el.start.disabled = active;
  el.stop.disabled = !active;
}

export function setClock(seconds) {
  el.clock.textContent = formatClock(seconds);
}

export function showSummaryLink(href) {
  el.summaryLink.href = href;
  el.summaryLink.hidden = false;
}

// ---- transcript ---------------------------------------------------------------------------

const nearBottom = () => el.transcript.scrollHeight - el.transcript.scrollTop - el.transcript.clientHeight < 48;

/** Keeps the newest words in view unless the agent has scrolled up to read. */
function keepScrolled(update) {
  const follow = nearBottom();
  update();
  if (follow) el.transcript.scrollTop = el.transcript.scrollHeight;
}

export function appendFinal(event) {
  const speaker = event.speaker ?? "";
  const key = lineKey(speaker, event.utterance_id);
  if (shown.lines.has(key)) return; // a repeat (e.g. a resent event)
  const start = num(event.start) ?? num(event.start_s) ?? 0;
  const line = h(
    "li",
    { class: "final", "data-speaker": speaker, "data-utterance-id": event.utterance_id, "data-seq": event.seq, "data-start": start },
    h("span", { class: "as-line-head" },
      h("span", { class: "as-who", text: speakerName(speaker) }),
      h("time", { class: "as-time", text: formatClock(start), title: `${start.toFixed(1)} s into the call` }),
      h("span", { class: "as-chips as-line-intents" })),
    // raw_text: what was said, sent only when the server lets the overlay show it (assist_overlay_raw); else the redacted text.
    h("span", { class: "as-text", text: event.raw_text ?? event.text ?? "" }),
  );
  shown.lines.set(key, line);
  el.transcriptEmpty.hidden = true;

  keepScrolled(() => {
    // In order of when the words were said: the two sides' finals can arrive out of order.
    let after = el.lines.lastElementChild;
    while (after && Number(after.dataset.start) > start) after = after.previousElementSibling;
    if (after) after.after(line);
    else el.lines.prepend(line);
  });

  const corrected = shown.pendingCorrections.get(key);
  if (corrected) {
    shown.pendingCorrections.delete(key);
    showCorrected(line, corrected);
    shown.corrected(speaker, event.utterance_id, corrected);
  }
  const pending = shown.pendingIntents.get(key);
  if (pending) {
    shown.pendingIntents.delete(key);
    setLineIntents(line, pending);
  }
}

/**
 * The agent's clicks on a line's chips correct its intents; `sessionOf()` is the call's session,
 * `corrected(speaker, utteranceId, names)` is told each line's labels after a click or a read-back.
 */
export function initCorrections(sessionOf, corrected = () => {}) {
  shown.corrected = corrected;
  initFeedback(sessionOf, (text) => addNotice("correction_failed", text),
    (line) => corrected(line.dataset.speaker, Number(line.dataset.utteranceId), correctedNames(line)));
}

/**
 * The call's stored corrections (GET .../corrections: [{speaker, utterance_id, labels}]) onto its lines,
 * marked corrected as a click marks them; a line not shown yet gets them when its final comes.
 * Returns how many lines on screen now show them.
 */
export function applyCorrections(corrections) {
  let applied = 0;
  for (const c of corrections ?? []) {
    if (!c || !Array.isArray(c.labels)) continue;
    const key = lineKey(c.speaker, c.utterance_id);
    const line = shown.lines.get(key);
    if (!line) {
      shown.pendingCorrections.set(key, c.labels);
      continue;
    }
    if (line.dataset.correcting) continue; // a click's answer is on its way: it is newer
    showCorrected(line, c.labels);
    shown.corrected(c.speaker, c.utterance_id, c.labels);
    applied += 1;
  }
  return applied;
}

/** Reads the call's stored corrections back onto its lines, while `stillCurrent()`; resolves to how many it set. */
export async function readCorrections(session, stillCurrent) {
  const corrections = await readBack(session);
  return stillCurrent() ? applyCorrections(corrections) : 0;
}

/** The labels a final line shows after the agent's correction, or null (not corrected, or not shown). */
const correctedLabels = (speaker, utteranceId) => correctedNames(shown.lines.get(lineKey(speaker, utteranceId)));

/** An intent event as its line shows it: [the event with the agent's corrected labels, true], or [event, false]. */
export function asCorrected(event) {
  const corrected = correctedLabels(event.speaker, event.utterance_id);
  return corrected ? [{ ...event, labels: corrected.map((name) => ({ name })) }, true] : [event, false];
}

/** Whether any final is on screen. */
export const hasFinals = () => shown.lines.size > 0;

/** What a final line says, or null when it is not on screen. */
export function lineText(speaker, utteranceId) {
  return shown.lines.get(lineKey(speaker, utteranceId))?.querySelector(".as-text").textContent ?? null;
}

/** A final intent event: chips on its line, or kept for the line when the final comes later. */
export function showLineIntents(event) {
  const key = lineKey(event.speaker, event.utterance_id);
  const line = shown.lines.get(key);
  if (line) setLineIntents(line, event);
  else shown.pendingIntents.set(key, event);
}

/** The line's chips, which the agent may correct (assist-feedback.js); the add list offers the label set's others. */
function setLineIntents(line, event) {
  const choices = Object.keys(event.scores ?? {});
  const corrected = correctedNames(line);
  // The server's answer to the agent's click (or its read-back) stands; the add list still gets the label set.
  if (corrected) renderLineIntents(line, corrected.map((name) => ({ name })), choices);
  else renderLineIntents(line, event.labels, choices);
}

function partialNode(speaker) {
  let entry = shown.partials[speaker];
  if (!entry) {
    const node = h("p", { class: "partial", "data-speaker": speaker },
      h("span", { class: "as-who", text: speakerName(speaker) }),
      h("span", { class: "committed" }), " ", h("span", { class: "tentative" }),
      h("span", { class: "as-chips as-line-intents" }));
    entry = shown.partials[speaker] = { utteranceId: null, node };
    keepScrolled(() => el.partials.append(node));
  }
  return entry;
}

export function showPartial(speaker, utteranceId, committed, tentative) {
  if (!committed && !tentative) return;
  const entry = partialNode(speaker);
  if (entry.utteranceId !== utteranceId) entry.node.querySelector(".as-line-intents").replaceChildren();
  entry.utteranceId = utteranceId;
  el.transcriptEmpty.hidden = true;
  keepScrolled(() => {
    entry.node.querySelector(".committed").textContent = committed;
    entry.node.querySelector(".tentative").textContent = tentative;
  });
}

/** The utterance a speaker's partial line shows, or null when it shows none. */
export const partialUtterance = (speaker) => shown.partials[speaker]?.utteranceId ?? null;

/** A provisional intent event: chips on the partial line of its utterance. */
export function showPartialIntents(event) {
  const entry = shown.partials[event.speaker];
  if (entry && entry.utteranceId === event.utterance_id) {
    entry.node.querySelector(".as-line-intents").replaceChildren(
      ...(event.labels ?? []).map((l) => intentChip(l.name, { score: l.score, provisional: true })),
    );
  }
}

export function clearPartial(speaker) {
  shown.partials[speaker]?.node.remove();
  delete shown.partials[speaker];
}

export function clearPartials() {
  for (const speaker of Object.keys(shown.partials)) clearPartial(speaker);
}

export function setSpeaking(speaker, on) {
  const indicator = el.speaking[speaker];
  if (indicator) indicator.hidden = !on;
}

export function clearSpeaking() {
  for (const speaker of Object.keys(el.speaking)) setSpeaking(speaker, false);
}

// ---- notices ----------------------------------------------------------------------------------

// Errors the call survives: a notice each, the call goes on.
const NOTICE_TEXT = {
  intent_failed: "Intent detection failed for a line: transcription goes on.",
  llm_timeout: "The language model was slow: the suggestion is the knowledge-base answer.",
  llm_unavailable: "The language model is unavailable: suggestions come from the knowledge base.",
  store_unavailable: "Storage is unavailable: the call goes on, but its summary may be incomplete.",
  suggestion_failed: "A suggestion could not be made for the last line.",
  topic_failed: "The topic could not be judged this time.",
};

/** A server `error` event the call survives, as its notice. */
export function addServerNotice(event) {
  addNotice(event.code ?? "error", NOTICE_TEXT[event.code] ?? `Server: ${event.message ?? event.code ?? "error"}`, event);
}

/** One notice per kind of trouble (`code`); a repeat counts up. */
export function addNotice(code, text, event = {}) {
  let item = el.notices.querySelector(`[data-code="${CSS.escape(code)}"]`);
  if (item) {
    const count = Number(item.dataset.count) + 1;
    item.dataset.count = String(count);
    item.querySelector(".as-notice-count").textContent = `×${count}`;
    return;
  }
  item = h("li", { class: "as-notice", "data-code": code, "data-count": 1, title: event.detail ?? event.message ?? "" },
    h("span", { class: "as-notice-text", text }),
    h("span", { class: "as-notice-count" }),
    h("button", { type: "button", class: "as-dismiss", "aria-label": "Dismiss", text: "×" }));
  item.querySelector("button").addEventListener("click", () => item.remove());
  el.notices.append(item);
}

// ---- reset --------------------------------------------------------------------------------------

/** Empties the transcript, the notices, the clock and the summary link for a new call. */
export function clearView() {
  shown.lines.clear();
  shown.pendingIntents.clear();
  shown.pendingCorrections.clear();
  clearPartials();
  el.lines.replaceChildren();
  el.transcriptEmpty.hidden = false;
  el.notices.replaceChildren();
  el.summaryLink.hidden = true;
  el.summaryLink.href = "#";
  setClock(0);
}

// The interview page's DOM: controls and status, the conversation, notices, the
// report link and the pace gauge. render-interviewer.js shows the interviewer.
// app.js and events.js decide *what* to show; these modules decide *how*.

import { byTestId, formatClock, h, showStatus } from "./page.js";

const GAUGE_MAX_WPS = 5; // the pace bar spans 0..5 words per second

const VERDICT_LABELS = {
  good: "Good pace",
  too_slow: "Too slow",
  too_fast: "Too fast",
  listening: "Listening…",
};

const MODE_LABELS = { interview: "Interview", transcribe: "Transcribe" };

const el = {
  mode: byTestId("mode"),
  role: byTestId("role"),
  difficulty: byTestId("difficulty"),
  start: byTestId("start"),
  stop: byTestId("stop"),
  resume: byTestId("resume"),
  status: byTestId("status"),
  speaking: byTestId("speaking"),
  partial: byTestId("partial"),
  committed: byTestId("partial").querySelector(".committed"),
  tentative: byTestId("partial").querySelector(".tentative"),
  transcript: byTestId("transcript"),
  transcriptHeading: document.getElementById("transcript-heading"),
  emptyNote: document.querySelector(".transcript-empty"),
  sessionInfo: document.querySelector(".session-info"),
  pace: byTestId("pace"),
  paceValue: byTestId("pace").querySelector(".pace-value"),
  paceVerdict: byTestId("pace").querySelector(".pace-verdict"),
  gauge: byTestId("pace").querySelector(".gauge"),
  gaugeBand: byTestId("pace").querySelector(".gauge-band"),
  gaugeNeedle: byTestId("pace").querySelector(".gauge-needle"),
  paceCounts: byTestId("pace").querySelector(".pace-counts"),
  interviewer: byTestId("interviewer"),
  notices: byTestId("notices"),
  reportReady: byTestId("report-ready"),
  reportLink: byTestId("report-link"),
};

export const controls = {
  start: el.start,
  stop: el.stop,
  resume: el.resume,
  mode: el.mode,
  role: el.role,
  difficulty: el.difficulty,
  reportLink: el.reportLink,
};

// ---- status and controls ----------------------------------------------------

/** tone: "info" | "live" | "error" | "done" (only changes the colour) */
export const setStatus = (text, tone = "info") => showStatus(el.status, text, tone);

/** Enables the controls that make sense in `state`; the Resume button only when a stored session exists. */
export function setControls(state, { canResume }) {
  const active = state === "connecting" || state === "live";
  el.start.disabled = active;
  el.stop.disabled = !active;
  el.mode.disabled = active;
  el.role.disabled = active;
  el.difficulty.disabled = active;
  el.resume.hidden = active || !canResume;
  document.body.dataset.state = state;
}

export function setChoices({ mode, role, difficulty }) {
  if (mode && [...el.mode.options].some((o) => o.value === mode)) el.mode.value = mode;
  if (role && [...el.role.options].some((o) => o.value === role)) el.role.value = role;
  if (difficulty && [...el.difficulty.options].some((o) => o.value === difficulty)) el.difficulty.value = difficulty;
}

/** One quiet line saying what the running session is; call with null to clear it. */
export function showSessionInfo(info) {
  if (!info) {
    el.sessionInfo.textContent = "";
    return;
  }
  const { mode, role, difficulty, pace_min_wps: min, pace_max_wps: max } = info;
  const roleLabel = [...el.role.options].find((o) => o.value === role)?.textContent ?? role;
  const parts = [MODE_LABELS[mode] ?? mode, roleLabel, difficulty];
  if (typeof min === "number" && typeof max === "number") {
    parts.push(`target pace ${min.toFixed(1)}–${max.toFixed(1)} w/s`);
  }
  el.sessionInfo.textContent = parts.filter(Boolean).join(" · ");
}

export function setSpeaking(on) {
  el.speaking.hidden = !on;
}

// ---- live transcript --------------------------------------------------------

export function showPartial(committed, tentative) {
  el.committed.textContent = committed;
  el.tentative.textContent = tentative;
}

export function clearPartial() {
  showPartial("", "");
}

export function clearTranscript() {
  el.transcript.replaceChildren();
  el.emptyNote.hidden = false;
  clearPartial();
}

/**
 * Interview mode shows the interviewer panel and calls the transcript a conversation
 * (the interviewer's lines interleave with the candidate's); transcribe mode hides both.
 */
export function setMode(mode) {
  const interview = mode !== "transcribe";
  document.body.dataset.mode = interview ? "interview" : "transcribe";
  el.interviewer.hidden = !interview;
  el.transcriptHeading.textContent = interview ? "Conversation" : "Transcript";
  el.emptyNote.textContent = interview
    ? "The interviewer's words and your answers will appear here."
    : "Your answers will appear here.";
}

/** Appends one final line; a seq already on screen (e.g. restored before a resume) is skipped. */
export function appendFinal(final) {
  if (el.transcript.querySelector(`.final[data-seq="${Number(final.seq)}"]`)) return;

  const latency = finalLatency(final);
  const badge = latency === null ? null
    : h("span", { class: "latency", text: `${latency.toFixed(2)} s`, title: "Time from the end of your speech to this line" });
  const line = h(
    "p",
    { class: "final", "data-seq": String(final.seq) },
    h("time", { class: "timestamp", text: formatClock(final.start), title: `${final.start.toFixed(2)} s into the session` }),
    " ",
    h("span", { class: "text", text: final.text }),
    badge ? [" ", badge] : null,
  );
  appendToConversation(line);
}

/** Adds a line (the candidate's or the interviewer's) at the end of the conversation. */
export function appendToConversation(line) {
  el.emptyNote.hidden = true;
  el.transcript.append(line);
  line.scrollIntoView({ block: "nearest" });
}

function finalLatency({ emitted_audio_s, speech_end_audio_s }) {
  if (typeof emitted_audio_s !== "number" || typeof speech_end_audio_s !== "number") return null;
  return Math.max(0, emitted_audio_s - speech_end_audio_s);
}

// ---- notices and the report -------------------------------------------------

/** One notice per problem the call survives; `action` = {label, onClick} adds a button. */
export function addNotice(code, text, { detail = "", action = null } = {}) {
  const item = h("li", { class: "notice", "data-testid": "notice", "data-code": code, title: detail || undefined },
    h("span", { class: "notice-text", text }));
  if (action) {
    const button = h("button", { type: "button", text: action.label });
    button.addEventListener("click", () => {
      item.remove();
      action.onClick();
    });
    item.append(button);
  }
  const dismiss = h("button", { type: "button", class: "dismiss", "aria-label": "Dismiss this notice", text: "×" });
  dismiss.addEventListener("click", () => item.remove());
  item.append(dismiss);
  el.notices.append(item);
}

export function clearNotices() {
  el.notices.replaceChildren();
}

export function showReportLink(href) {
  el.reportLink.href = href;
  el.reportReady.hidden = false;
}

export function hideReportLink() {
  el.reportReady.hidden = true;
  el.reportLink.setAttribute("href", "#");
}

export const reportShown = () => !el.reportReady.hidden;

// ---- pace gauge -------------------------------------------------------------

const percentOfGauge = (wps) => `${(Math.min(Math.max(wps, 0), GAUGE_MAX_WPS) / GAUGE_MAX_WPS) * 100}%`;

export function setPaceRange(minWps, maxWps) {
  el.gaugeBand.style.left = percentOfGauge(minWps);
  el.gaugeBand.style.width = `calc(${percentOfGauge(maxWps)} - ${percentOfGauge(minWps)})`;
  el.gaugeBand.title = `Good range: ${minWps.toFixed(1)}–${maxWps.toFixed(1)} w/s`;
}

export function showPace(pace) {
  const wps = pace.window_wps ?? 0;
  const verdictText = VERDICT_LABELS[pace.verdict] ?? pace.verdict;

  el.pace.dataset.verdict = pace.verdict;
  el.paceValue.textContent = `${wps.toFixed(1)} w/s`;
  el.paceVerdict.textContent = verdictText;
  el.paceCounts.textContent = `fillers: ${pace.fillers ?? 0} · long pauses: ${pace.long_pauses ?? 0}`;
  if (typeof pace.min_wps === "number" && typeof pace.max_wps === "number") {
    setPaceRange(pace.min_wps, pace.max_wps);
  }

  el.gaugeNeedle.hidden = false;
  el.gaugeNeedle.style.left = percentOfGauge(wps);
  el.gauge.setAttribute("aria-valuenow", wps.toFixed(1));
  el.gauge.setAttribute("aria-valuetext", `${wps.toFixed(1)} words per second, ${verdictText}`);
}

export function resetPace() {
  // The next session's `ready` brings its own good range.
  el.gaugeBand.style.width = "0";
  el.gaugeBand.title = "";
  el.pace.dataset.verdict = "none";
  el.paceValue.textContent = "– w/s";
  el.paceVerdict.textContent = "Waiting for speech";
  el.paceCounts.textContent = "fillers: 0 · long pauses: 0";
  el.gaugeNeedle.hidden = true;
  el.gauge.setAttribute("aria-valuenow", "0");
  el.gauge.setAttribute("aria-valuetext", "no speech yet");
}

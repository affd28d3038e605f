// Everything that touches the page's DOM. app.js decides *what* to show;
// this module decides *how*.

const GAUGE_MAX_WPS = 5; // the pace bar spans 0..5 words per second

const VERDICT_LABELS = {
  good: "Good pace",
  too_slow: "Too slow",
  too_fast: "Too fast",
  listening: "Listening…",
};

// What the turn indicator says in each interview state (`turn` events, plus the client's own
// idle/waiting/failed/stopped/offline, which the server never sends).
const TURN_LABELS = {
  idle: "Waiting to start",
  waiting: "Waiting for the interviewer",
  greeting: "Interviewer speaking",
  asking: "Interviewer speaking",
  listening: "Listening — answer when ready",
  follow_up: "Thinking of a follow-up",
  next: "Moving on to the next question",
  closing: "Wrapping up",
  ended: "Interview finished",
  failed: "Interviewer stopped — transcription goes on",
  stopped: "Call ended",
  offline: "Disconnected",
};

// A small tag on the interviewer's lines that are not plain speech.
const AGENT_KIND_TAGS = { follow_up: "follow-up", hint: "hint", repeat: "repeat", notice: "notice" };

const MODE_LABELS = { interview: "Interview", transcribe: "Transcribe" };

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

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
  agentAudio: byTestId("agent-audio"),
  interviewer: byTestId("interviewer"),
  turn: byTestId("turn"),
  agentSpeaking: byTestId("agent-speaking"),
  questionEmpty: byTestId("interviewer").querySelector(".question-empty"),
  question: byTestId("question"),
  questionNumber: byTestId("question").querySelector(".question-number"),
  questionText: byTestId("question-text"),
  followUp: byTestId("follow-up"),
  followUpText: byTestId("follow-up").querySelector(".follow-up-text"),
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

// ---- formatting -------------------------------------------------------------

/** 3.2 -> "0:03", 754 -> "12:34", 3725 -> "1:02:05" */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(seconds ?? 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

const percentOfGauge = (wps) => `${(Math.min(Math.max(wps, 0), GAUGE_MAX_WPS) / GAUGE_MAX_WPS) * 100}%`;

// ---- status and controls ----------------------------------------------------

/** tone: "info" | "live" | "error" (only changes the colour) */
export function setStatus(text, tone = "info") {
  el.status.textContent = text;
  el.status.dataset.tone = tone;
}

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

  const line = document.createElement("p");
  line.className = "final";
  line.dataset.seq = String(final.seq);

  const time = document.createElement("time");
  time.className = "timestamp";
  time.textContent = formatClock(final.start);
  time.title = `${final.start.toFixed(2)} s into the session`;

  const text = document.createElement("span");
  text.className = "text";
  text.textContent = final.text;

  line.append(time, " ", text);

  const latency = finalLatency(final);
  if (latency !== null) {
    const badge = document.createElement("span");
    badge.className = "latency";
    badge.textContent = `${latency.toFixed(2)} s`;
    badge.title = "Time from the end of your speech to this line";
    line.append(" ", badge);
  }

  appendToConversation(line);
}

function appendToConversation(line) {
  el.emptyNote.hidden = true;
  el.transcript.append(line);
  line.scrollIntoView({ block: "nearest" });
}

function finalLatency({ emitted_audio_s, speech_end_audio_s }) {
  if (typeof emitted_audio_s !== "number" || typeof speech_end_audio_s !== "number") return null;
  return Math.max(0, emitted_audio_s - speech_end_audio_s);
}

// ---- the interviewer ---------------------------------------------------------

/** The line of an utterance still being spoken; a finished line is never reopened. */
function openAgentLine(utteranceId) {
  const lines = el.transcript.querySelectorAll(`[data-testid="agent"][data-utterance-id="${Number(utteranceId)}"]`);
  const last = lines[lines.length - 1];
  return last && last.dataset.final !== "true" ? last : null;
}

function createAgentLine({ utterance_id, kind, emitted_audio_s }) {
  const line = document.createElement("div");
  line.className = "agent-line";
  line.dataset.testid = "agent";
  line.dataset.utteranceId = String(utterance_id);
  line.dataset.kind = kind ?? "";
  line.dataset.final = "false";
  line.dataset.interrupted = "false";

  const head = document.createElement("p");
  head.className = "agent-head";
  const speaker = document.createElement("span");
  speaker.className = "speaker";
  speaker.textContent = "Interviewer";
  head.append(speaker);
  if (AGENT_KIND_TAGS[kind]) {
    const tag = document.createElement("span");
    tag.className = "kind-tag";
    tag.textContent = AGENT_KIND_TAGS[kind];
    head.append(" ", tag);
  }
  if (typeof emitted_audio_s === "number") {
    const time = document.createElement("time");
    time.className = "timestamp";
    time.textContent = formatClock(emitted_audio_s);
    time.title = `${emitted_audio_s.toFixed(2)} s into the session`;
    head.prepend(time, " ");
  }

  const text = document.createElement("p");
  text.className = "text";
  line.append(head, text);
  return line;
}

/**
 * One `agent` event: the first delta of an utterance opens its line, later deltas extend
 * it, and the final one closes it (marking it when the candidate cut the interviewer off).
 */
export function showAgentText(event) {
  let line = openAgentLine(event.utterance_id);
  if (!line) {
    // A final with no words (stopped before its first sentence) said nothing: show nothing.
    if (!event.text_delta) return;
    line = createAgentLine(event);
    appendToConversation(line);
  }
  if (event.text_delta) {
    // Each sentence its own node, so a screen reader announces it as an addition.
    line.querySelector(".text").append(document.createTextNode(event.text_delta));
    line.scrollIntoView({ block: "nearest" });
  }
  if (event.final) {
    line.dataset.final = "true";
    if (event.interrupted) markInterrupted(line);
  }
}

/**
 * The call ended mid-utterance: that line gets no final, and the next connection may
 * reuse its id for new words (the saved interview state can lag), so close it here.
 */
export function closeAgentLines() {
  for (const line of el.transcript.querySelectorAll('[data-testid="agent"][data-final="false"]')) {
    line.dataset.final = "true";
  }
}

function markInterrupted(line) {
  line.dataset.interrupted = "true";
  if (line.querySelector(".interrupted")) return;
  const marker = document.createElement("span");
  marker.className = "interrupted";
  marker.textContent = "(interrupted)";
  marker.title = "You started speaking, so the interviewer stopped";
  line.querySelector(".text").append(" ", marker);
}

/** The voice indicator, and a highlight on the line whose voice plays; null turns both off. */
export function setAgentSpeaking(utteranceId) {
  el.agentSpeaking.hidden = utteranceId === null;
  for (const line of el.transcript.querySelectorAll('.agent-line[data-speaking="true"]')) {
    delete line.dataset.speaking;
  }
  if (utteranceId === null) return;
  const lines = el.transcript.querySelectorAll(`[data-testid="agent"][data-utterance-id="${Number(utteranceId)}"]`);
  if (lines.length) lines[lines.length - 1].dataset.speaking = "true";
}

export function setTurn(state) {
  el.turn.dataset.state = state;
  el.turn.textContent = TURN_LABELS[state] ?? state.replaceAll("_", " ");
}

export const turnState = () => el.turn.dataset.state;

/** {index, total, text, follow_up}: a follow-up shows under the question it follows. */
export function showQuestion({ index, total, text, follow_up }) {
  const sameQuestion = el.question.dataset.index === String(index);
  el.questionEmpty.hidden = true;
  el.question.hidden = false;
  el.question.dataset.index = String(index);
  el.question.dataset.total = String(total);
  el.question.dataset.followUp = String(Boolean(follow_up));
  el.questionNumber.textContent = `Question ${index} of ${total}`;

  if (follow_up) {
    // After a reconnect the follow-up may come without its question: show it alone.
    if (!sameQuestion) el.questionText.textContent = "";
    el.questionText.hidden = !el.questionText.textContent;
    el.followUpText.textContent = text;
    el.followUp.hidden = false;
  } else {
    el.questionText.textContent = text;
    el.questionText.hidden = false;
    el.followUpText.textContent = "";
    el.followUp.hidden = true;
  }
}

export function resetInterviewer() {
  el.question.hidden = true;
  delete el.question.dataset.index;
  el.questionText.textContent = "";
  el.followUpText.textContent = "";
  el.followUp.hidden = true;
  el.questionEmpty.hidden = false;
  setTurn("idle");
  setAgentSpeaking(null);
}

// ---- notices and the report -------------------------------------------------

/** One notice per problem the call survives; `action` = {label, onClick} adds a button. */
export function addNotice(code, text, { detail = "", action = null } = {}) {
  const item = document.createElement("li");
  item.className = "notice";
  item.dataset.testid = "notice";
  item.dataset.code = code;
  if (detail) item.title = detail;

  const message = document.createElement("span");
  message.className = "notice-text";
  message.textContent = text;
  item.append(message);

  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      item.remove();
      action.onClick();
    });
    item.append(button);
  }

  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "dismiss";
  dismiss.setAttribute("aria-label", "Dismiss this notice");
  dismiss.textContent = "×";
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

// ---- agent audio ------------------------------------------------------------

/**
 * Plays the audio the server sends back (the interviewer's voice). `onBlocked` runs if
 * the browser refuses to autoplay it: rare, since Start was a click, but then only
 * another click can start it.
 */
export function playRemoteStream(stream, onBlocked = () => {}) {
  el.agentAudio.srcObject = stream;
  el.agentAudio.play?.().catch((error) => {
    if (error?.name === "NotAllowedError" && el.agentAudio.srcObject === stream) onBlocked();
  });
}

/** Retries playback from a click; -> whether it plays now. */
export function resumeRemoteAudio() {
  return el.agentAudio.play?.().then(
    () => true,
    () => false,
  );
}

export function stopRemoteStream() {
  el.agentAudio.srcObject = null;
}

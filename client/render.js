// Everything that touches the page's DOM. app.js decides *what* to show;
// this module decides *how*.

const GAUGE_MAX_WPS = 5; // the pace bar spans 0..5 words per second

const VERDICT_LABELS = {
  good: "Good pace",
  too_slow: "Too slow",
  too_fast: "Too fast",
  listening: "Listening…",
};

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

const el = {
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
};

export const controls = { start: el.start, stop: el.stop, resume: el.resume, role: el.role, difficulty: el.difficulty };

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
  el.role.disabled = active;
  el.difficulty.disabled = active;
  el.resume.hidden = active || !canResume;
  document.body.dataset.state = state;
}

export function setChoices({ role, difficulty }) {
  if (role && [...el.role.options].some((o) => o.value === role)) el.role.value = role;
  if (difficulty && [...el.difficulty.options].some((o) => o.value === difficulty)) el.difficulty.value = difficulty;
}

/** One quiet line saying what the running session is; call with null to clear it. */
export function showSessionInfo(info) {
  if (!info) {
    el.sessionInfo.textContent = "";
    return;
  }
  const { role, difficulty, pace_min_wps: min, pace_max_wps: max } = info;
  const roleLabel = [...el.role.options].find((o) => o.value === role)?.textContent ?? role;
  const parts = [roleLabel, difficulty];
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

  el.emptyNote.hidden = true;
  el.transcript.append(line);
  line.scrollIntoView({ block: "nearest" });
}

function finalLatency({ emitted_audio_s, speech_end_audio_s }) {
  if (typeof emitted_audio_s !== "number" || typeof speech_end_audio_s !== "number") return null;
  return Math.max(0, emitted_audio_s - speech_end_audio_s);
}

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

/** Plays whatever audio the server sends back (an agent voice, if it has one). */
export function playRemoteStream(stream) {
  el.agentAudio.srcObject = stream;
  el.agentAudio.play?.().catch(() => {
    /* autoplay refused: harmless, Start was a user gesture so this is rare */
  });
}

export function stopRemoteStream() {
  el.agentAudio.srcObject = null;
}

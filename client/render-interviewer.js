// The interviewer on the interview page: its lines in the conversation, the turn
// indicator, the question card and its voice. render.js owns the rest of the page.
// The interviewer's words go in with textContent, never as HTML.

import { byTestId, formatClock, h } from "./page.js";
import { appendToConversation } from "./render.js";

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

const el = {
  transcript: byTestId("transcript"),
  agentAudio: byTestId("agent-audio"),
  turn: byTestId("turn"),
  agentSpeaking: byTestId("agent-speaking"),
  questionEmpty: byTestId("interviewer").querySelector(".question-empty"),
  question: byTestId("question"),
  questionNumber: byTestId("question").querySelector(".question-number"),
  questionText: byTestId("question-text"),
  followUp: byTestId("follow-up"),
  followUpText: byTestId("follow-up").querySelector(".follow-up-text"),
};

// ---- the interviewer's lines -------------------------------------------------------

const agentLines = (utteranceId) =>
  el.transcript.querySelectorAll(`[data-testid="agent"][data-utterance-id="${Number(utteranceId)}"]`);

/** The line of an utterance still being spoken; a finished line is never reopened. */
function openAgentLine(utteranceId) {
  const lines = agentLines(utteranceId);
  const last = lines[lines.length - 1];
  return last && last.dataset.final !== "true" ? last : null;
}

function createAgentLine({ utterance_id, kind, emitted_audio_s }) {
  const time = typeof emitted_audio_s === "number"
    ? h("time", { class: "timestamp", text: formatClock(emitted_audio_s), title: `${emitted_audio_s.toFixed(2)} s into the session` })
    : null;
  const head = h(
    "p",
    { class: "agent-head" },
    time ? [time, " "] : null,
    h("span", { class: "speaker", text: "Interviewer" }),
    AGENT_KIND_TAGS[kind] ? [" ", h("span", { class: "kind-tag", text: AGENT_KIND_TAGS[kind] })] : null,
  );
  const attrs = {
    class: "agent-line",
    "data-testid": "agent",
    "data-utterance-id": String(utterance_id),
    "data-kind": kind ?? "",
    "data-final": "false",
    "data-interrupted": "false",
  };
  return h("div", attrs, head, h("p", { class: "text" }));
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
  const title = "You started speaking, so the interviewer stopped";
  line.querySelector(".text").append(" ", h("span", { class: "interrupted", text: "(interrupted)", title }));
}

/** The voice indicator, and a highlight on the line whose voice plays; null turns both off. */
export function setAgentSpeaking(utteranceId) {
  el.agentSpeaking.hidden = utteranceId === null;
  for (const line of el.transcript.querySelectorAll('.agent-line[data-speaking="true"]')) {
    delete line.dataset.speaking;
  }
  if (utteranceId === null) return;
  const lines = agentLines(utteranceId);
  if (lines.length) lines[lines.length - 1].dataset.speaking = "true";
}

// ---- turn and question -----------------------------------------------------------------

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

// ---- the interviewer's voice ---------------------------------------------------------

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

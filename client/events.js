// The interview page: what each event from the server shows. app.js holds the
// connection and hands every data-channel message here; render.js and
// render-interviewer.js own the DOM.

import { CALL_MOVING_CODES, parseEvent, rememberToken } from "./page.js";
import * as interviewer from "./render-interviewer.js";
import * as view from "./render.js";

// Errors the call survives (it goes on, perhaps in text only): shown as notices, not in the status.
const NOTICE_TEXT = {
  llm_timeout: "The interviewer took too long to think, so it used a prepared follow-up.",
  llm_unavailable: "The interviewer's language model is unavailable, so it uses prepared follow-ups.",
  tts_failed: "The interviewer's voice failed: going on in text only.",
  report_failed: "The report could not be built yet: it is built again when you open it.",
  interviewer_failed: "The interviewer stopped because of an internal error: transcription goes on.",
};

// Exposed for tests and for poking at from the console. `state` is app.js's; `mode` is the
// running (or last) session's; `reportUrl` is the report link, with its token, once the
// interview has finished.
export const earshot = { events: [], state: "idle", mode: "interview", reportUrl: null };
window.earshot = earshot;

// What the events of the current connection have shown.
const heard = {
  session: null, // {session_id, token}: the report link carries its token
  lastFinalUtterance: -1, // partials of an utterance that already has its final are late: drop them
  partialUtterance: null, // whose words the partial line shows now
  agentVoice: null, // the interviewer utterance whose audio plays now
  shownSession: null, // whose conversation is on screen, so a resume of it keeps the interviewer's lines
};

let callMoving = () => {};

/** What app.js does when the server asks for a reconnect (it resumes the session). */
export function onCallMoving(handler) {
  callMoving = handler;
}

/** The events that follow are `session`'s, over a new connection. */
export function listenTo(session) {
  heard.session = session;
  heard.lastFinalUtterance = -1;
  heard.partialUtterance = null;
}

/** The conversation on screen is now the session `sessionId`'s. */
export function showingSession(sessionId) {
  heard.shownSession = sessionId;
}

export function handleMessage(data) {
  const event = parseEvent(data, "Earshot");
  if (!event) return;
  earshot.events.push(event);
  EVENT_HANDLERS[event.type]?.(event);
}

const EVENT_HANDLERS = {
  ready(event) {
    if (event.mode) setMode(event.mode);
    view.showSessionInfo(event);
    view.setPaceRange(event.pace_min_wps, event.pace_max_wps);
  },

  speech_start() {
    view.setSpeaking(true);
  },

  partial(event) {
    if (event.utterance_id <= heard.lastFinalUtterance) return;
    heard.partialUtterance = event.utterance_id;
    view.showPartial(event.committed ?? "", event.tentative ?? "");
  },

  speech_end(event) {
    view.setSpeaking(false);
    // A dropped utterance (a cough, a click) gets no final to replace its partial.
    if (event.dropped && heard.partialUtterance === event.utterance_id) clearPartialLine();
  },

  no_final(event) {
    // Whisper found no words in it (or its decode failed): nothing will replace its partial.
    if (heard.partialUtterance === event.utterance_id) clearPartialLine();
  },

  final(event) {
    heard.lastFinalUtterance = Math.max(heard.lastFinalUtterance, event.utterance_id);
    // The next utterance may already be showing partials; only clear our own (or older) words.
    if (heard.partialUtterance === null || heard.partialUtterance <= event.utterance_id) clearPartialLine();
    view.appendFinal(event);
  },

  pace(event) {
    view.showPace(event);
  },

  error(event) {
    if (CALL_MOVING_CODES.has(event.code)) {
      view.setStatus("The server is moving this call: reconnecting…");
      callMoving();
      return;
    }
    const notice = NOTICE_TEXT[event.code];
    if (notice) {
      // The interviewer's trouble: the call goes on, so it must not look like a failed connection.
      view.addNotice(event.code, notice, { detail: event.message });
      if (event.code === "tts_failed") setAgentVoice(null);
      if (event.code === "interviewer_failed") interviewer.setTurn("failed");
      return;
    }
    // Server-side trouble with one step (e.g. a slow transcription): report it, keep listening.
    view.setStatus(`Server error: ${event.message}`, "error");
  },

  agent(event) {
    interviewer.showAgentText(event);
  },

  agent_audio_start(event) {
    setAgentVoice(event.utterance_id);
  },

  agent_audio_end(event) {
    // An end for an older utterance must not hide the indicator of the one playing now.
    if (heard.agentVoice === event.utterance_id) setAgentVoice(null);
  },

  turn(event) {
    interviewer.setTurn(event.state);
  },

  question(event) {
    interviewer.showQuestion(event);
  },

  report_ready(event) {
    const href = reportHref(event);
    earshot.reportUrl = href;
    view.showReportLink(href);
    view.setStatus("The interview has finished: your report is ready. Press Stop to hang up.", "done");
  },
};

/** The report page reads the token from the fragment, which browsers never send to the server. */
function reportHref(event) {
  const session = heard.session;
  if (!session) return event.url;
  rememberToken(session); // the report opens in this tab
  return `${event.url}#token=${encodeURIComponent(session.token)}`;
}

export function setAgentVoice(utteranceId) {
  heard.agentVoice = utteranceId;
  interviewer.setAgentSpeaking(utteranceId);
}

export function setMode(mode) {
  earshot.mode = mode === "transcribe" ? "transcribe" : "interview";
  view.setMode(earshot.mode);
}

function clearPartialLine() {
  heard.partialUtterance = null;
  view.clearPartial();
}

/** Autoplay refused: say so, and let a click (which browsers accept) start the voice. */
export function audioBlocked() {
  view.addNotice("audio_blocked", "The browser blocked the interviewer's voice.", {
    action: { label: "Play the voice", onClick: () => interviewer.resumeRemoteAudio() },
  });
}

/** Empties everything that belonged to the previous session's conversation. */
export function clearConversation() {
  view.clearTranscript();
  interviewer.resetInterviewer();
  view.clearNotices();
  view.hideReportLink();
  earshot.reportUrl = null;
  heard.shownSession = null;
}

/**
 * Puts a stored session's finals and pace back on screen before reconnecting. The
 * snapshot has no interviewer lines: if this page still shows the session (a dropped
 * link, not a reload), they stay; its finals are skipped by seq.
 */
export function showSnapshot(snapshot, session) {
  view.setChoices(snapshot);
  setMode(snapshot.mode);
  view.showSessionInfo(snapshot);
  if (heard.shownSession !== session.session_id) clearConversation();
  heard.shownSession = session.session_id;
  for (const final of snapshot.finals ?? []) view.appendFinal(final);
  if (snapshot.pace) view.showPace(snapshot.pace);
  else view.resetPace();
}

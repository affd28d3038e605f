// Earshot browser client: session lifecycle and event handling.
// api.js talks HTTP, signalling.js talks WebRTC, render.js owns the DOM.

import * as api from "./api.js";
import { CHANNEL_OPEN_TIMEOUT_MS, closePeer, createPeer, negotiate, openMicrophone, stopMicrophone } from "./signalling.js";
import * as view from "./render.js";

const STORAGE_KEY = "earshot.session";
// How long a resume keeps retrying while the server still holds the old connection.
const SESSION_LIVE_WAIT_MS = 40000;
const SESSION_LIVE_RETRY_MS = 2000;
// The report page reads the token from its URL fragment; this key is its fallback.
const REPORT_TOKEN_PREFIX = "earshot.token.";

// Errors the call survives (it goes on, perhaps in text only): shown as notices, not in the status.
const NOTICE_TEXT = {
  llm_timeout: "The interviewer took too long to think, so it used a prepared follow-up.",
  llm_unavailable: "The interviewer's language model is unavailable, so it uses prepared follow-ups.",
  tts_failed: "The interviewer's voice failed: going on in text only.",
  report_failed: "The report could not be built yet: it is built again when you open it.",
  interviewer_failed: "The interviewer stopped because of an internal error: transcription goes on.",
};

// Exposed for tests and for poking at from the console. `mode` is the running (or last)
// session's; `reportUrl` is the report link, with its token, once the interview has finished.
const earshot = { events: [], state: "idle", mode: "interview", reportUrl: null };
window.earshot = earshot;

// The one connection this page may hold. `attempt` grows every time a
// connection starts or is torn down, so the async steps and callbacks of an
// abandoned attempt can tell they are stale and do nothing.
const conn = {
  attempt: 0,
  session: null, // {session_id, token}
  mic: null,
  peer: null, // {pc, channel}
  openTimer: null,
  lastFinalUtterance: -1, // partials of an utterance that already has its final are late: drop them
  partialUtterance: null, // whose words the partial line shows now
  agentVoice: null, // the interviewer utterance whose audio plays now
  shownSession: null, // whose conversation is on screen, so a resume of it keeps the interviewer's lines
};

class Superseded extends Error {}

// ---- state ------------------------------------------------------------------

function setState(state) {
  earshot.state = state;
  view.setControls(state, { canResume: storedSession() !== null });
}

const isCurrent = (attempt) => attempt === conn.attempt;

function ensureCurrent(attempt) {
  if (!isCurrent(attempt)) throw new Superseded();
}

/** Runs `fn` only if `attempt` is still the live one (callbacks outlive their connection). */
const guard = (attempt, fn) => (...args) => {
  if (isCurrent(attempt)) fn(...args);
};

// ---- session storage (survives a reload, not a closed tab) ------------------

function storedSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
    return saved?.session_id && saved?.token ? saved : null;
  } catch {
    return null; // storage disabled or corrupted: behave as if nothing was saved
  }
}

function storeSession(session) {
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  } catch {
    /* storage disabled: the session still works, it just cannot be resumed */
  }
}

function forgetSession() {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* nothing to forget */
  }
}

// ---- connection lifecycle ---------------------------------------------------

/** Releases mic and peer and invalidates every pending step of the current attempt. */
function teardownLocal() {
  conn.attempt += 1;
  clearTimeout(conn.openTimer);
  closePeer(conn.peer);
  stopMicrophone(conn.mic);
  conn.peer = null;
  conn.mic = null;
  view.setSpeaking(false);
  view.clearPartial();
  view.stopRemoteStream();
  view.closeAgentLines();
  setAgentVoice(null);
}

function beginAttempt() {
  teardownLocal();
  return conn.attempt;
}

async function start() {
  const attempt = beginAttempt();
  const choices = {
    mode: view.controls.mode.value,
    role: view.controls.role.value,
    difficulty: view.controls.difficulty.value,
  };

  // A new session replaces any interrupted one; tell the server so it can free it now.
  const previous = storedSession();
  forgetSession();
  conn.session = null;
  if (previous) api.deleteSession(previous).catch(() => {});

  clearConversation();
  view.resetPace();
  setMode(choices.mode);
  view.showSessionInfo(choices);
  setState("connecting");

  try {
    // Mic before session: a refused mic then leaves no orphan session on the server.
    view.setStatus("Asking for the microphone…");
    await acquireMicrophone(attempt);

    view.setStatus("Connecting…");
    const session = await api.createSession(choices);
    if (!isCurrent(attempt)) {
      api.deleteSession(session).catch(() => {});
      throw new Superseded();
    }
    conn.shownSession = session.session_id;
    storeSession({ ...session, ...choices });
    await connect(session, attempt);
  } catch (error) {
    handleConnectError(error, attempt, "Start");
  }
}

async function resume() {
  const session = storedSession();
  if (!session) return;
  const attempt = beginAttempt();
  setState("connecting");

  try {
    view.setStatus("Restoring the session…");
    const snapshot = await api.getSession(session);
    ensureCurrent(attempt);
    restoreSnapshot(snapshot, session);
    if (snapshot.state === "ended") {
      fail("This session has ended: press Start for a new one", { forget: true });
      return;
    }

    view.setStatus("Asking for the microphone…");
    await acquireMicrophone(attempt);
    await connect(session, attempt);
  } catch (error) {
    handleConnectError(error, attempt, "Resume session");
  }
}

async function acquireMicrophone(attempt) {
  const mic = await openMicrophone();
  if (!isCurrent(attempt)) {
    stopMicrophone(mic);
    throw new Superseded();
  }
  conn.mic = mic;
}

/** Step 2 of the protocol for an existing session: peer, offer, answer. Goes live when the channel opens. */
async function connect(session, attempt) {
  conn.session = session;
  conn.lastFinalUtterance = -1;
  conn.partialUtterance = null;
  view.setStatus("Connecting…");

  conn.peer = createPeer(conn.mic, {
    onOpen: guard(attempt, goLive),
    onMessage: guard(attempt, handleMessage),
    onLost: guard(attempt, connectionLost),
    onTrack: guard(attempt, (event) =>
      view.playRemoteStream(event.streams[0] ?? new MediaStream([event.track]), guard(attempt, audioBlocked)),
    ),
  });

  await negotiate(conn.peer.pc, (offer) => sendOfferPatiently(session, offer, attempt));
  ensureCurrent(attempt);

  conn.openTimer = setTimeout(
    guard(attempt, () => {
      if (earshot.state === "connecting") fail("Could not connect: the audio link to the server did not open");
    }),
    CHANNEL_OPEN_TIMEOUT_MS,
  );
}

/**
 * The server allows one connection per session and answers 409 session_live
 * while it still holds one. After a dropped link it may not have noticed yet
 * (ICE consent takes a while to fail), so a resume waits for it rather than
 * giving up. The same offer can be sent again: it is still unanswered.
 */
async function sendOfferPatiently(session, offer, attempt) {
  const deadline = Date.now() + SESSION_LIVE_WAIT_MS;
  for (;;) {
    ensureCurrent(attempt);
    try {
      return await api.sendOffer(session, offer);
    } catch (error) {
      const stillHeld = error instanceof api.ApiError && error.code === "session_live";
      if (!stillHeld || Date.now() > deadline) throw error;
      view.setStatus("Waiting for the server to release the previous connection…");
      await new Promise((resolve) => setTimeout(resolve, SESSION_LIVE_RETRY_MS));
    }
  }
}

function goLive() {
  clearTimeout(conn.openTimer);
  setState("live");
  if (earshot.mode === "interview") {
    // The interview may have finished before a reconnect: its report link stays the news.
    if (!view.reportShown()) view.setStatus("Live — listen to the interviewer, then answer aloud", "live");
    if (view.turnState() === "idle" || view.turnState() === "offline") view.setTurn("waiting");
  } else {
    view.setStatus("Live — speak now", "live");
  }
}

function stop() {
  const session = conn.session;
  teardownLocal();
  conn.session = null;
  forgetSession();
  // Best effort: if this fails the server still expires the idle session.
  if (session) api.deleteSession(session).catch(() => {});
  view.setStatus(view.reportShown() ? "Stopped. The interview finished: open your report below." : "Stopped");
  markCallOver("stopped");
  setState("stopped");
}

/** The turn indicator must not keep saying "Listening" once nobody is. */
function markCallOver(state) {
  if (view.turnState() !== "ended") view.setTurn(state);
}

/** The link dropped: keep the stored session so the user can resume it. */
function connectionLost() {
  fail("Connection lost");
}

function fail(message, { forget = false } = {}) {
  teardownLocal();
  if (forget) {
    forgetSession();
    conn.session = null;
  }
  markCallOver("offline");
  view.setStatus(message, "error");
  setState("error");
}

function handleConnectError(error, attempt, action) {
  // Stop (or a newer Start/Resume) took over and has already updated the page.
  if (error instanceof Superseded || !isCurrent(attempt)) return;
  console.error("Earshot: connection failed", error);
  // A session the server no longer knows cannot be resumed: stop offering to.
  const sessionGone = error instanceof api.ApiError && error.sessionGone;
  fail(describeError(error, action), { forget: sessionGone });
}

/** Turns what went wrong into a sentence that says what to do about it. */
function describeError(error, action) {
  switch (error?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return `Microphone blocked: allow it in the browser and press ${action} again`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `No microphone found: connect one and press ${action} again`;
    case "NotReadableError":
    case "AbortError":
      return `The microphone is in use by another app: free it and press ${action} again`;
    case "InsecureContextError":
      return `Microphone unavailable: ${error.message}`;
  }
  if (error instanceof api.ApiError) {
    return error.status === 0 ? "Cannot reach the server: check it is running" : `Server error: ${error.message}`;
  }
  return `Could not connect: ${error?.message ?? error}`;
}

// ---- resume -----------------------------------------------------------------

/**
 * Puts a stored session's finals and pace back on screen before reconnecting. The
 * snapshot has no interviewer lines: if this page still shows the session (a dropped
 * link, not a reload), they stay; its finals are skipped by seq.
 */
function restoreSnapshot(snapshot, session) {
  view.setChoices(snapshot);
  setMode(snapshot.mode);
  view.showSessionInfo(snapshot);
  if (conn.shownSession !== session.session_id) clearConversation();
  conn.shownSession = session.session_id;
  for (const final of snapshot.finals ?? []) view.appendFinal(final);
  if (snapshot.pace) view.showPace(snapshot.pace);
  else view.resetPace();
}

// ---- events from the server -------------------------------------------------

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
    if (event.utterance_id <= conn.lastFinalUtterance) return;
    conn.partialUtterance = event.utterance_id;
    view.showPartial(event.committed ?? "", event.tentative ?? "");
  },

  speech_end(event) {
    view.setSpeaking(false);
    // A dropped utterance (a cough, a click) gets no final to replace its partial.
    if (event.dropped && conn.partialUtterance === event.utterance_id) clearPartialLine();
  },

  final(event) {
    conn.lastFinalUtterance = Math.max(conn.lastFinalUtterance, event.utterance_id);
    // The next utterance may already be showing partials; only clear our own (or older) words.
    if (conn.partialUtterance === null || conn.partialUtterance <= event.utterance_id) clearPartialLine();
    view.appendFinal(event);
  },

  pace(event) {
    view.showPace(event);
  },

  error(event) {
    const notice = NOTICE_TEXT[event.code];
    if (notice) {
      // The interviewer's trouble: the call goes on, so it must not look like a failed connection.
      view.addNotice(event.code, notice, { detail: event.message });
      if (event.code === "tts_failed") setAgentVoice(null);
      if (event.code === "interviewer_failed") view.setTurn("failed");
      return;
    }
    // Server-side trouble with one step (e.g. a slow transcription): report it, keep listening.
    view.setStatus(`Server error: ${event.message}`, "error");
  },

  agent(event) {
    view.showAgentText(event);
  },

  agent_audio_start(event) {
    setAgentVoice(event.utterance_id);
  },

  agent_audio_end(event) {
    // An end for an older utterance must not hide the indicator of the one playing now.
    if (conn.agentVoice === event.utterance_id) setAgentVoice(null);
  },

  turn(event) {
    view.setTurn(event.state);
  },

  question(event) {
    view.showQuestion(event);
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
  const session = conn.session;
  if (!session) return event.url;
  try {
    sessionStorage.setItem(REPORT_TOKEN_PREFIX + session.session_id, session.token);
  } catch {
    /* storage disabled: the fragment still carries the token */
  }
  return `${event.url}#token=${encodeURIComponent(session.token)}`;
}

function setAgentVoice(utteranceId) {
  conn.agentVoice = utteranceId;
  view.setAgentSpeaking(utteranceId);
}

function setMode(mode) {
  earshot.mode = mode === "transcribe" ? "transcribe" : "interview";
  view.setMode(earshot.mode);
}

/** Empties everything that belonged to the previous session's conversation. */
function clearConversation() {
  view.clearTranscript();
  view.resetInterviewer();
  view.clearNotices();
  view.hideReportLink();
  earshot.reportUrl = null;
  conn.shownSession = null;
}

/** Autoplay refused: say so, and let a click (which browsers accept) start the voice. */
function audioBlocked() {
  view.addNotice("audio_blocked", "The browser blocked the interviewer's voice.", {
    action: { label: "Play the voice", onClick: () => view.resumeRemoteAudio() },
  });
}

function clearPartialLine() {
  conn.partialUtterance = null;
  view.clearPartial();
}

function handleMessage(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    console.warn("Earshot: ignoring a data-channel message that is not JSON", data);
    return;
  }
  earshot.events.push(event);
  EVENT_HANDLERS[event.type]?.(event);
}

// ---- page setup -------------------------------------------------------------

function init() {
  view.controls.start.addEventListener("click", start);
  view.controls.stop.addEventListener("click", stop);
  view.controls.resume.addEventListener("click", resume);
  // Only between sessions (the select is disabled during one): preview what the mode shows.
  view.controls.mode.addEventListener("change", () => setMode(view.controls.mode.value));
  // The report opens in this tab: hang up properly first rather than let the page drop the
  // call, which would leave a session to "resume" on the way back.
  view.controls.reportLink.addEventListener("click", () => {
    if (earshot.state === "live" || earshot.state === "connecting") stop();
  });

  view.resetPace();
  view.resetInterviewer();
  const interrupted = storedSession();
  if (interrupted) {
    view.setChoices(interrupted);
    view.setStatus("A session was interrupted. Press Resume session to continue it, or Start for a new one.");
  } else {
    view.setStatus("Choose a mode, role and difficulty, then press Start.");
  }
  setMode(view.controls.mode.value);
  setState("idle");
}

init();

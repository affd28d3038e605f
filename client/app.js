// Earshot browser client: session lifecycle and event handling.
// api.js talks HTTP, signalling.js talks WebRTC, render.js owns the DOM.

import * as api from "./api.js";
import { closePeer, createPeer, negotiate, openMicrophone, stopMicrophone } from "./signalling.js";
import * as view from "./render.js";

const STORAGE_KEY = "earshot.session";
// After the answer is applied the data channel normally opens within a second;
// past this, something between browser and server blocks the media path.
const CHANNEL_OPEN_TIMEOUT_MS = 15000;
// How long a resume keeps retrying while the server still holds the old connection.
const SESSION_LIVE_WAIT_MS = 40000;
const SESSION_LIVE_RETRY_MS = 2000;

// Exposed for tests and for poking at from the console.
const earshot = { events: [], state: "idle" };
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
}

function beginAttempt() {
  teardownLocal();
  return conn.attempt;
}

async function start() {
  const attempt = beginAttempt();
  const choices = { role: view.controls.role.value, difficulty: view.controls.difficulty.value };

  // A new session replaces any interrupted one; tell the server so it can free it now.
  const previous = storedSession();
  forgetSession();
  conn.session = null;
  if (previous) api.deleteSession(previous).catch(() => {});

  view.clearTranscript();
  view.resetPace();
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
    restoreSnapshot(snapshot);
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
    onClose: guard(attempt, connectionLost),
    onConnectionState: guard(attempt, (state) => {
      if (state === "failed" || state === "disconnected") connectionLost();
    }),
    onTrack: guard(attempt, (event) => view.playRemoteStream(event.streams[0] ?? new MediaStream([event.track]))),
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
  view.setStatus("Live — speak now", "live");
}

function stop() {
  const session = conn.session;
  teardownLocal();
  conn.session = null;
  forgetSession();
  // Best effort: if this fails the server still expires the idle session.
  if (session) api.deleteSession(session).catch(() => {});
  view.setStatus("Stopped");
  setState("stopped");
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

/** Puts a stored session's finals and pace back on screen before reconnecting. */
function restoreSnapshot(snapshot) {
  view.setChoices(snapshot);
  view.showSessionInfo(snapshot);
  view.clearTranscript();
  for (const final of snapshot.finals ?? []) view.appendFinal(final);
  if (snapshot.pace) view.showPace(snapshot.pace);
  else view.resetPace();
}

// ---- events from the server -------------------------------------------------

const EVENT_HANDLERS = {
  ready(event) {
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
    // Server-side trouble with one step (e.g. a slow transcription): report it, keep listening.
    view.setStatus(`Server error: ${event.message}`, "error");
  },
};

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

  view.resetPace();
  const interrupted = storedSession();
  if (interrupted) {
    view.setChoices(interrupted);
    view.setStatus("A session was interrupted. Press Resume session to continue it, or Start for a new one.");
  } else {
    view.setStatus("Choose a role and difficulty, then press Start.");
  }
  setState("idle");
}

init();

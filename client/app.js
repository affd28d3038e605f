// Earshot browser client: the interview page's session lifecycle. api.js talks HTTP,
// signalling.js talks WebRTC, events.js handles what the server sends, render.js and
// render-interviewer.js own the DOM.

import * as api from "./api.js";
import { consentFollows, loadConsent, showConsent } from "./consent.js";
import * as events from "./events.js";
import { earshot } from "./events.js";
import { Attempts, Superseded, describeCallError, sendOfferPatiently } from "./page.js";
import * as interviewer from "./render-interviewer.js";
import * as view from "./render.js";
import {
  CHANNEL_OPEN_TIMEOUT_MS,
  closePeer,
  createPeer,
  iceConfiguration,
  linkFailureMessage,
  negotiate,
  openMicrophone,
  stopMicrophone,
} from "./signalling.js";

const STORAGE_KEY = "earshot.session";

// The one connection this page may hold. Every connection started or torn down
// begins a new attempt, so the async steps and callbacks of an abandoned one can
// tell they are stale and do nothing.
const attempts = new Attempts();
const conn = {
  session: null, // {session_id, token, ice_servers}
  mic: null,
  peer: null, // {pc, channel}
  openTimer: null,
};

// ---- state ------------------------------------------------------------------

function setState(state) {
  earshot.state = state;
  view.setControls(state, { canResume: storedSession() !== null });
}

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
  attempts.next();
  clearTimeout(conn.openTimer);
  closePeer(conn.peer);
  stopMicrophone(conn.mic);
  conn.peer = null;
  conn.mic = null;
  view.setSpeaking(false);
  view.clearPartial();
  interviewer.stopRemoteStream();
  interviewer.closeAgentLines();
  events.setAgentVoice(null);
}

function beginAttempt() {
  teardownLocal();
  return attempts.current;
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

  events.clearConversation();
  view.resetPace();
  events.setMode(choices.mode);
  view.showSessionInfo(choices);
  setState("connecting");

  try {
    // Mic before session: a refused mic then leaves no orphan session on the server.
    showConsent(choices.mode); // what is stored, and for how long, is on the page before the mic opens
    view.setStatus("Asking for the microphone…");
    await acquireMicrophone(attempt);

    view.setStatus("Connecting…");
    const session = await api.createSession(choices);
    if (!attempts.isCurrent(attempt)) {
      api.deleteSession(session).catch(() => {});
      throw new Superseded();
    }
    events.showingSession(session.session_id);
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
    attempts.ensureCurrent(attempt);
    events.showSnapshot(snapshot, session);
    if (snapshot.state === "ended") {
      fail("This session has ended: press Start for a new one", { forget: true });
      return;
    }

    showConsent(snapshot.mode);
    view.setStatus("Asking for the microphone…");
    await acquireMicrophone(attempt);
    await connect(session, attempt);
  } catch (error) {
    handleConnectError(error, attempt, "Resume session");
  }
}

async function acquireMicrophone(attempt) {
  const mic = await openMicrophone();
  if (!attempts.isCurrent(attempt)) {
    stopMicrophone(mic);
    throw new Superseded();
  }
  conn.mic = mic;
}

/** Step 2 of the protocol for an existing session: peer, offer, answer. Goes live when the channel opens. */
async function connect(session, attempt) {
  conn.session = session;
  events.listenTo(session);
  view.setStatus("Connecting…");

  const guard = (fn) => attempts.guard(attempt, fn);
  const ice = iceConfiguration(session);
  conn.peer = createPeer(conn.mic, ice, {
    onOpen: guard(goLive),
    onMessage: guard(events.handleMessage),
    onLost: guard((failed) => connectionLost(failed, ice)),
    onTrack: guard((event) =>
      interviewer.playRemoteStream(event.streams[0] ?? new MediaStream([event.track]), guard(events.audioBlocked)),
    ),
  });

  const waiting = () => view.setStatus("Waiting for the server to release the previous connection…");
  await negotiate(conn.peer.pc, (offer) => sendOfferPatiently(() => api.sendOffer(session, offer), attempts, attempt, waiting));
  attempts.ensureCurrent(attempt);

  conn.openTimer = setTimeout(
    guard(() => {
      if (earshot.state === "connecting") {
        fail(linkFailureMessage(ice, "Could not connect: the audio link to the server did not open"));
      }
    }),
    CHANNEL_OPEN_TIMEOUT_MS,
  );
}

function goLive() {
  clearTimeout(conn.openTimer);
  setState("live");
  if (earshot.mode === "interview") {
    // The interview may have finished before a reconnect: its report link stays the news.
    if (!view.reportShown()) view.setStatus("Live — listen to the interviewer, then answer aloud", "live");
    if (interviewer.turnState() === "idle" || interviewer.turnState() === "offline") interviewer.setTurn("waiting");
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
  if (interviewer.turnState() !== "ended") interviewer.setTurn(state);
}

/** The link dropped (or never came up): keep the stored session so the user can resume it. */
function connectionLost(failed, ice) {
  const neverLive = failed && earshot.state === "connecting";
  fail(neverLive ? linkFailureMessage(ice, "Could not connect: the audio link to the server failed") : "Connection lost");
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
  if (error instanceof Superseded || !attempts.isCurrent(attempt)) return;
  console.error("Earshot: connection failed", error);
  // A session the server no longer knows cannot be resumed: stop offering to.
  const sessionGone = error instanceof api.ApiError && error.sessionGone;
  const message = describeCallError(error, {
    action,
    notFound: "No microphone found: connect one",
    inUse: "The microphone is in use by another app",
  });
  fail(message, { forget: sessionGone });
}

// ---- page setup -------------------------------------------------------------

function init() {
  view.controls.start.addEventListener("click", start);
  view.controls.stop.addEventListener("click", stop);
  view.controls.resume.addEventListener("click", resume);
  // The server closes the call and asks for a reconnect (it is draining): resume at once, on
  // whichever instance the load balancer picks; the snapshot fills in anything missed.
  events.onCallMoving(() => {
    if (storedSession()) resume();
  });
  // Only between sessions (the select is disabled during one): preview what the mode shows.
  view.controls.mode.addEventListener("change", () => {
    events.setMode(view.controls.mode.value);
    consentFollows(view.controls.mode.value);
  });
  // The report opens in this tab: hang up properly first rather than let the page drop the
  // call, which would leave a session to "resume" on the way back.
  view.controls.reportLink.addEventListener("click", () => {
    if (earshot.state === "live" || earshot.state === "connecting") stop();
  });

  view.resetPace();
  interviewer.resetInterviewer();
  const interrupted = storedSession();
  if (interrupted) {
    view.setChoices(interrupted);
    view.setStatus("A session was interrupted. Press Resume session to continue it, or Start for a new one.");
  } else {
    view.setStatus("Choose a mode, role and difficulty, then press Start.");
  }
  events.setMode(view.controls.mode.value);
  setState("idle");
  loadConsent(() => view.controls.mode.value);
}

init();

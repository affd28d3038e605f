// Earshot agent-assist overlay: streams the agent's and the customer's audio as two
// labelled WebRTC tracks and shows, live, what the server makes of the call.
//
// This module holds the call (session, peer, reconnect, stop, what went wrong) and routes each
// server event to the page. assist-sources.js opens the audio, assist-transcript.js takes the
// transcript's events, assist-view.js shows the status and the transcript (assist-feedback.js: the
// agent's intent corrections), assist-cards.js the suggestion, mood, topic, intents and metrics;
// api.js talks HTTP, signalling.js WebRTC.

import * as api from "./api.js";
import * as cards from "./assist-cards.js";
import { loadConsent, showConsent } from "./consent.js";
import { CallAudio, UserError, idleHint, initSetup, lockSetup, sourceKind } from "./assist-sources.js";
import * as view from "./assist-view.js";
import { awaitingFinals, clearTranscriptState, forgetOpenUtterances, transcriptHandlers } from "./assist-transcript.js";
import { Attempts, CALL_MOVING_CODES, Superseded, describeCallError, formatClock } from "./page.js";
import { parseEvent, rememberToken, sendOfferPatiently, speakerName } from "./page.js";
import { CHANNEL_OPEN_TIMEOUT_MS, closePeer, createMultiTrackPeer, iceConfiguration, linkFailureMessage, negotiate } from "./signalling.js";

// When a recording ends, keep streaming silence this long so the last utterance ends and gets its final…
const FILE_TAIL_MS = 1500;
// …and, if a side is still mid-utterance then, wait for its final at most this much longer.
const FILE_FINAL_WAIT_MS = 5000;
const DELETE_TIMEOUT_MS = 10000;

// ---- state ---------------------------------------------------------------------------

// Exposed for tests and the console: every parsed event, the state, handle(event)
// to feed an event by hand (as if it came over the data channel), and readCorrections()
// (what a reconnect does: the call's stored corrections onto its lines).
const earshotAssist = { events: [], state: "idle", session: null, summaryUrl: null, handle: handleEvent, readCorrections };
window.earshotAssist = earshotAssist;

// The one call this page may hold. Every start and teardown begins a new attempt, so
// the async steps and callbacks of an abandoned one do nothing.
const attempts = new Attempts();
const conn = {
  session: null, // {session_id, token}
  peer: null, // {pc, channel}
  audio: null, // CallAudio: the inputs or the recording
  sources: null, // its labelled tracks, which a reconnect sends again
  openTimer: null,
  endTimer: null,
  clockTimer: null,
  liveSince: null,
  ending: false,
};

function setState(state) {
  earshotAssist.state = state;
  const active = state === "connecting" || state === "live";
  view.showState(state, active);
  lockSetup(active);
}

const setStatus = view.setStatus;

// ---- connection lifecycle ---------------------------------------------------------------

/** Releases audio and peer, and invalidates every pending step of the current call. */
function teardownLocal() {
  attempts.next();
  clearTimeout(conn.openTimer);
  clearTimeout(conn.endTimer);
  clearInterval(conn.clockTimer);
  closePeer(conn.peer);
  conn.peer = null;
  conn.audio?.close();
  conn.audio = null;
  conn.sources = null;
  conn.ending = false;
  view.clearSpeaking();
  view.clearPartials();
  forgetOpenUtterances();
}

async function start() {
  // A call on screen from before is replaced; hang it up properly if it was still going.
  const previous = conn.session;
  teardownLocal();
  const attempt = attempts.current;
  const wasActive = earshotAssist.state === "live" || earshotAssist.state === "connecting";
  if (previous && wasActive) api.deleteSession(previous).catch(() => {});
  conn.session = null;
  earshotAssist.session = null;
  clearCall();
  setState("connecting");

  try {
    showConsent("assist"); // what is stored, and for how long, is on the page before any audio opens
    // Nothing is awaited before this: a recording's AudioContext must be made in the click's turn.
    conn.audio = new CallAudio();
    const sources = await conn.audio.open(setStatus);
    attempts.ensureCurrent(attempt);

    setStatus("Connecting…");
    const session = await api.createSession({ mode: "assist" });
    if (!attempts.isCurrent(attempt)) {
      api.deleteSession(session).catch(() => {});
      throw new Superseded();
    }
    conn.session = session;
    earshotAssist.session = session.session_id;
    // The summary link opens in another tab: leave the token where that tab finds it too.
    rememberToken(session, { otherTabs: true });

    conn.sources = sources;
    await connectPeer(session, sources, attempt);
  } catch (error) {
    connectFailed(error, attempt);
  }
}

function connectFailed(error, attempt) {
  if (error instanceof Superseded || !attempts.isCurrent(attempt)) return;
  if (!(error instanceof UserError)) console.error("Earshot assist: connection failed", error);
  fail(describeError(error));
}

/** A peer connection for the session's labelled tracks: offer, answer; live once the channel opens. */
async function connectPeer(session, sources, attempt) {
  const guard = (fn) => attempts.guard(attempt, fn);
  const ice = iceConfiguration(session);
  conn.peer = createMultiTrackPeer(sources, ice, {
    onOpen: guard(goLive),
    onMessage: guard(onMessage),
    onLost: guard((failed) => connectionLost(failed, ice)),
  });
  const tracks = Object.fromEntries(sources.map(({ track, speaker }) => [track.id, speaker]));
  await negotiate(conn.peer.pc, (offer) => sendOfferPatiently(() => api.sendOffer(session, offer, tracks), attempts, attempt));
  attempts.ensureCurrent(attempt);

  conn.openTimer = setTimeout(
    guard(() => {
      if (earshotAssist.state === "connecting") {
        fail(linkFailureMessage(ice, "Could not connect: the audio link to the server did not open"));
      }
    }),
    CHANNEL_OPEN_TIMEOUT_MS,
  );
}

/**
 * The session goes on over a new connection, same sources and cards: asked to (server_draining), or the
 * link dropped. The server resumes the call where it was, summary and all, on whichever instance answers.
 */
async function reconnect(why = "The server is moving this call") {
  const { session, sources } = conn;
  if (!session || !sources || !["live", "connecting"].includes(earshotAssist.state)) return;
  attempts.next();
  clearTimeout(conn.openTimer);
  clearInterval(conn.clockTimer);
  closePeer(conn.peer);
  conn.peer = null;
  const attempt = attempts.current;
  setState("connecting");
  setStatus(`${why}: reconnecting…`);
  await connectPeer(session, sources, attempt).catch((error) => connectFailed(error, attempt));
}

function goLive() {
  clearTimeout(conn.openTimer);
  setState("live");
  if (conn.liveSince === null) conn.liveSince = Date.now();
  else readCorrections(); // a reconnect: the clock goes on, and the lines get the corrections stored meanwhile
  updateClock();
  conn.clockTimer = setInterval(updateClock, 1000);
  if (conn.audio.recording) {
    conn.audio.play(attempts.guard(attempts.current, recordingEnded));
    setStatus(`Live — playing the recording (${formatClock(conn.audio.duration)})`, "live");
  } else {
    setStatus(sourceKind() === "mic" ? "Live — listening to the agent" : "Live — listening to the call", "live");
  }
}

function updateClock() {
  if (conn.liveSince !== null) view.setClock((Date.now() - conn.liveSince) / 1000);
}

/** The recording has played: stream silence a little longer so the last words get their finals, then stop. */
function recordingEnded() {
  if (earshotAssist.state !== "live" || conn.ending) return;
  conn.ending = true;
  setStatus("The recording has ended: waiting for the last words…", "live");
  const deadline = Date.now() + FILE_TAIL_MS + FILE_FINAL_WAIT_MS;
  const check = attempts.guard(attempts.current, () => {
    if (awaitingFinals() === 0 || Date.now() >= deadline) {
      stop("The recording has ended.");
      return;
    }
    conn.endTimer = setTimeout(check, 250);
  });
  conn.endTimer = setTimeout(check, FILE_TAIL_MS);
}

/** Ends the call (Stop, or the recording ran out): the server then builds the summary. */
async function stop(message = "Call ended.") {
  const session = conn.session;
  teardownLocal();
  setState("ended");
  if (!session) {
    setStatus(message);
    return;
  }
  const attempt = attempts.current;
  setStatus(`${message} Saving the call summary…`);
  try {
    // The server stores the summary before it answers, so the link works once this returns.
    await Promise.race([
      api.deleteSession(session),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), DELETE_TIMEOUT_MS)),
    ]);
  } catch (error) {
    console.warn("Earshot assist: ending the session failed", error);
  }
  if (!attempts.isCurrent(attempt)) return;
  showSummaryLink(session);
  setStatus(`${message} The call summary is ready.`, "done");
}

function connectionLost(failed, ice) {
  if (failed && earshotAssist.state === "connecting") {
    fail(linkFailureMessage(ice, "Could not connect: the audio link to the server failed"));
    return;
  }
  // A live call whose link drops (the network, or its server instance died) reconnects once, by itself;
  // when that fails too (or it dropped while connecting), the call ends here.
  if (earshotAssist.state === "live" && !conn.ending) {
    reconnect("The link to the server dropped");
    return;
  }
  const session = conn.session;
  const attempt = fail("Connection lost: the call has ended");
  // What was said so far is in the summary, stored when the server hangs up.
  if (session && view.hasFinals()) hangUp.then(() => attempts.isCurrent(attempt) && showSummaryLink(session));
}

let hangUp = Promise.resolve();

/** Tears down, says what went wrong, and hangs the session up (best effort) so the server frees it. */
function fail(message) {
  const session = conn.session;
  teardownLocal();
  setStatus(message, "error");
  setState("error");
  if (session) hangUp = api.deleteSession(session).catch(() => {});
  return attempts.current;
}

function describeError(error) {
  if (error instanceof UserError) return error.message;
  return describeCallError(error, {
    action: "Start",
    notFound: "Audio input not found: connect it (or pick another)",
    inUse: "The audio input is in use by another app",
  });
}

/** After a reconnect: the call's stored intent corrections onto its lines (assist-view.js); how many it set. */
function readCorrections() {
  const session = conn.session;
  return session ? view.readCorrections(session, () => conn.session === session) : Promise.resolve(0);
}

/** Relative to this page (the client's folder), so it works under any mount prefix. */
export function summaryHref(session) {
  return `sessions/${encodeURIComponent(session.session_id)}/summary#token=${encodeURIComponent(session.token)}`;
}

function showSummaryLink(session) {
  earshotAssist.summaryUrl = summaryHref(session);
  view.showSummaryLink(earshotAssist.summaryUrl);
}

/** Empties what the previous call showed. */
function clearCall() {
  earshotAssist.events.length = 0;
  earshotAssist.summaryUrl = null;
  clearTranscriptState();
  conn.liveSince = null;
  view.clearView();
  cards.clearCards();
}

// ---- events ----------------------------------------------------------------------------

function onMessage(data) {
  const event = parseEvent(data, "Earshot assist");
  if (event) handleEvent(event);
}

/** One parsed event: recorded for tests, then shown. Also callable by hand (window.earshotAssist.handle). */
function handleEvent(event) {
  if (!event || typeof event !== "object") return;
  earshotAssist.events.push(event);
  try {
    EVENT_HANDLERS[event.type]?.(event);
  } catch (error) {
    // One odd event must not stop the overlay.
    console.error(`Earshot assist: cannot show a ${event.type} event`, error, event);
  }
}

const EVENT_HANDLERS = {
  ready(event) {
    const speakers = Array.isArray(event.speakers) ? event.speakers : [];
    if (speakers.length && earshotAssist.state === "live" && !conn.audio?.recording) {
      setStatus(`Live — listening to ${speakers.map((s) => speakerName(s).toLowerCase()).join(" and ")}`, "live");
    }
  },

  ...transcriptHandlers,

  sentiment: cards.showSentiment,
  topic: cards.showTopic,
  suggestion: cards.showSuggestion,
  call_metrics: cards.showMetrics,

  summary_ready() {
    if (conn.session) showSummaryLink(conn.session);
  },

  error(event) {
    if (CALL_MOVING_CODES.has(event.code)) {
      reconnect();
      return;
    }
    // The server closes the call for this one (no audio frame came): the link's drop must not
    // reconnect the same dead sources.
    if (event.code === "no_media") conn.ending = true;
    view.addServerNotice(event);
  },
};

// ---- page setup ----------------------------------------------------------------------------------

function init() {
  view.controls.start.addEventListener("click", start);
  view.controls.stop.addEventListener("click", () => stop("Call ended."));
  cards.initCards();
  // Clicks on a line's intent chips correct them; a corrected customer line's labels reach its card too.
  view.initCorrections(() => conn.session, (speaker, id, names) => speaker === "customer" && cards.correctCustomerIntents(id, names));
  initSetup({
    changed() {
      if (["idle", "ended", "error"].includes(earshotAssist.state)) setStatus(idleHint());
    },
    monitorChanged: (on) => conn.audio?.setMonitor(on),
  });
  // Closing the overlay mid-call hangs up properly, so the server stores the summary now.
  window.addEventListener("pagehide", () => {
    if (conn.session && (earshotAssist.state === "live" || earshotAssist.state === "connecting")) {
      api.deleteSession(conn.session).catch(() => {});
    }
  });

  clearCall();
  setStatus(idleHint());
  setState("idle");
  loadConsent(() => "assist");
}

init();

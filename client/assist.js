// Earshot agent-assist overlay: streams the agent's and the customer's audio as two
// labelled WebRTC tracks and shows, live, what the server makes of the call.
//
// Sources: the microphone (agent), the microphone plus a second input such as a USB
// line-in from the phone system (customer), or a stereo call recording played in real
// time (left channel = agent, right = customer; a mono file is the customer).
// Everything said on the call is user content: it goes in with textContent, never as HTML.

import * as api from "./api.js";
import {
  CHANNEL_OPEN_TIMEOUT_MS,
  closePeer,
  createMultiTrackPeer,
  listAudioInputs,
  negotiate,
  openAudioInput,
  openMicrophone,
  stopMicrophone,
} from "./signalling.js";
import {
  MOOD_NAMES,
  TOKEN_PREFIX,
  TREND_SIGNS,
  fixed,
  formatClock,
  h,
  intentName,
  num,
  signed,
  speakerName,
  svg,
} from "./page.js";

// When a recording ends, keep streaming silence this long so the last utterance ends and gets its final…
const FILE_TAIL_MS = 1500;
// …and, if a side is still mid-utterance then, wait for its final at most this much longer.
const FILE_FINAL_WAIT_MS = 5000;
const DELETE_TIMEOUT_MS = 10000;
const MONITOR_GAIN = 0.2; // the recording, heard locally, quietly
// The summary page reads the token from its URL fragment; these keys are its fallback.
const SPARK_POINTS = 40; // customer scores the sparkline shows, newest last

const SOURCE_NAMES = { knowledge: "Knowledge base", llm: "AI draft" };

// Errors the call survives: a notice each, the call goes on.
const NOTICE_TEXT = {
  intent_failed: "Intent detection failed for a line: transcription goes on.",
  llm_timeout: "The language model was slow: the suggestion is the knowledge-base answer.",
  llm_unavailable: "The language model is unavailable: suggestions come from the knowledge base.",
  store_unavailable: "Storage is unavailable: the call goes on, but its summary may be incomplete.",
  suggestion_failed: "A suggestion could not be made for the last line.",
  topic_failed: "The topic could not be judged this time.",
};

// ---- page elements --------------------------------------------------------------

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const byRole = (role) => document.querySelector(`[data-role="${role}"]`);

const el = {
  status: byTestId("assist-status"),
  clock: byRole("clock"),
  source: byTestId("assist-source"),
  file: byTestId("assist-file"),
  fileRow: byRole("file-row"),
  monitor: byRole("monitor"),
  deviceRow: byRole("device-row"),
  device: byRole("device"),
  refreshDevices: byRole("refresh-devices"),
  start: byTestId("assist-start"),
  stop: byTestId("assist-stop"),
  summaryLink: byTestId("assist-summary-link"),
  notices: byRole("notices"),
  suggestion: byTestId("assist-suggestion"),
  suggestionText: byRole("suggestion-text"),
  suggestionSource: byRole("suggestion-source"),
  suggestionRefining: byRole("suggestion-refining"),
  suggestionMeta: byRole("suggestion-meta"),
  copy: byRole("copy"),
  sentiment: byTestId("assist-sentiment"),
  mood: byRole("mood"),
  trend: byRole("trend"),
  meter: byRole("meter"),
  meterMark: byRole("meter-mark"),
  spark: byRole("spark"),
  topic: byTestId("assist-topic"),
  topicLabel: byRole("topic-label"),
  topicMeta: byRole("topic-meta"),
  intents: byTestId("assist-intents"),
  intentsCurrent: byRole("intents-current"),
  intentsCounts: byRole("intents-counts"),
  transcript: byTestId("assist-transcript"),
  transcriptEmpty: byRole("transcript-empty"),
  lines: byRole("lines"),
  partials: byRole("partials"),
  speaking: { agent: byRole("speaking-agent"), customer: byRole("speaking-customer") },
  metrics: byTestId("assist-metrics"),
  share: byRole("share"),
  shareAgent: byRole("share-agent"),
  shareCustomer: byRole("share-customer"),
  shareAgentPct: byRole("share-agent-pct"),
  shareCustomerPct: byRole("share-customer-pct"),
  m: {
    call: byRole("m-call"),
    talk: byRole("m-talk"),
    rate: byRole("m-rate"),
    interrupts: byRole("m-interrupts"),
    silence: byRole("m-silence"),
    long: byRole("m-long"),
    overlap: byRole("m-overlap"),
    ratio: byRole("m-ratio"),
  },
};

// ---- small helpers ----------------------------------------------------------------

/** Short durations in seconds, long ones as a clock. */
function formatSeconds(seconds) {
  const s = num(seconds);
  if (s === null) return "–";
  return s < 60 ? `${s.toFixed(1)} s` : formatClock(s);
}

const pair = (map, format) => `${format(map?.agent)} / ${format(map?.customer)}`;
const lineKey = (speaker, utteranceId) => `${speaker ?? ""}:${utteranceId}`;
const shorten = (text, max) => (text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text);

// ---- state ---------------------------------------------------------------------------

// Exposed for tests and the console: every parsed event, the state, and handle(event)
// to feed an event by hand (as if it came over the data channel).
const earshotAssist = { events: [], state: "idle", session: null, summaryUrl: null, handle: handleEvent };
window.earshotAssist = earshotAssist;

// The one call this page may hold. `attempt` grows every time a call starts or is
// torn down, so the async steps and callbacks of an abandoned one do nothing.
const conn = {
  attempt: 0,
  session: null, // {session_id, token}
  peer: null, // {pc, channel}
  streams: [], // MediaStreams to stop (microphone, line-in)
  player: null, // {ctx, buffer, source, monitor, startedAt} for a recording
  openTimer: null,
  endTimer: null,
  clockTimer: null,
  liveSince: null,
  ending: false,
};

// What the call has shown so far.
const call = {
  lines: new Map(), // speaker:utterance_id -> the final's <li>
  pendingIntents: new Map(), // speaker:utterance_id -> intent event that came before its final
  lastFinal: {}, // speaker -> highest utterance_id with a final
  partials: {}, // speaker -> {utteranceId, node}
  open: new Map(), // speaker:utterance_id -> true while an utterance awaits its final
  counted: new Set(), // customer utterances already in the intent counts
  counts: new Map(), // intent name -> customer utterances with it
  scores: new Map(), // customer utterance_id -> sentiment score (insertion order = call order)
  suggestionFor: -1, // the customer utterance the shown suggestion answers
  finals: 0,
};

class Superseded extends Error {}
const isCurrent = (attempt) => attempt === conn.attempt;
function ensureCurrent(attempt) {
  if (!isCurrent(attempt)) throw new Superseded();
}
const guard = (attempt, fn) => (...args) => {
  if (isCurrent(attempt)) fn(...args);
};

function setState(state) {
  earshotAssist.state = state;
  document.body.dataset.state = state;
  const active = state === "connecting" || state === "live";
  el.start.disabled = active;
  el.stop.disabled = !active;
  el.source.disabled = active;
  el.file.disabled = active;
  el.device.disabled = active;
  el.refreshDevices.disabled = active;
}

/** tone: info | live | error | done (only changes the colour) */
function setStatus(text, tone = "info") {
  el.status.textContent = text;
  el.status.dataset.tone = tone;
}

// ---- sources -------------------------------------------------------------------------

function showSourceFields() {
  const source = el.source.value;
  el.fileRow.hidden = source !== "file";
  el.deviceRow.hidden = source !== "mic+device";
  if (source === "mic+device") refreshDevices();
  if (earshotAssist.state === "idle" || earshotAssist.state === "ended" || earshotAssist.state === "error") {
    setStatus(idleHint());
  }
}

function idleHint() {
  switch (el.source.value) {
    case "file":
      return "Choose a stereo call recording (left = agent, right = customer), then press Start.";
    case "mic+device":
      return "Pick the input that carries the customer (e.g. the phone system's line-in), then press Start.";
    default:
      return "Press Start: your microphone is streamed as the agent.";
  }
}

let devicesAsked = false;

/** Fills the customer-input list; device names need a microphone permission, so ask once. */
async function refreshDevices() {
  try {
    let inputs = await listAudioInputs();
    if (inputs.length && inputs.every((d) => !d.label) && !devicesAsked) {
      devicesAsked = true;
      stopMicrophone(await openMicrophone()); // only to be allowed to read the names
      inputs = await listAudioInputs();
    }
    const previous = el.device.value;
    el.device.replaceChildren(
      ...inputs.map((d, i) => h("option", { value: d.deviceId, text: d.label || `Audio input ${i + 1}` })),
    );
    if (!inputs.length) {
      el.device.append(h("option", { value: "", text: "No audio input found" }));
    } else if (inputs.some((d) => d.deviceId === previous)) {
      el.device.value = previous;
    } else {
      // The default microphone is the agent's: offer a named input, the newest (often the USB one) first.
      const named = inputs.filter((d) => !["default", "communications"].includes(d.deviceId));
      if (named.length) el.device.value = named[named.length - 1].deviceId;
    }
  } catch (error) {
    console.warn("Earshot assist: cannot list audio inputs", error);
    el.device.replaceChildren(h("option", { value: "", text: "Audio inputs unavailable" }));
  }
}

/** -> [{track, stream, speaker}] for the chosen source. */
async function openSources(attempt) {
  const source = el.source.value;
  if (source === "file") return openRecording(attempt);

  setStatus("Asking for the microphone…");
  const mic = await openMicrophone();
  conn.streams.push(mic);
  ensureCurrent(attempt);
  const sources = [{ track: mic.getAudioTracks()[0], stream: mic, speaker: "agent" }];
  if (source === "mic+device") {
    const deviceId = el.device.value;
    if (!deviceId) throw new UserError("Choose the customer's audio input first.");
    // A line-in carries the customer's voice as is: the browser's voice processing would only harm it.
    const line = await openAudioInput(deviceId, {
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
    });
    conn.streams.push(line);
    ensureCurrent(attempt);
    sources.push({ track: line.getAudioTracks()[0], stream: line, speaker: "customer" });
  }
  return sources;
}

class UserError extends Error {}

/**
 * Decodes the chosen recording and wires it: channel 0 -> agent track, channel 1 ->
 * customer track (a mono file -> the customer). It starts playing once the call is live.
 */
async function openRecording(attempt) {
  const file = el.file.files?.[0];
  if (!file) throw new UserError("Choose a call recording first.");
  const AudioContextClass = window.AudioContext ?? window.webkitAudioContext;
  if (!AudioContextClass) throw new UserError("This browser cannot play recordings into a call (no Web Audio).");
  // Created in the click's turn so autoplay rules let it run.
  const ctx = new AudioContextClass();
  conn.player = { ctx, buffer: null, source: null, monitor: null, startedAt: null };
  ctx.resume().catch(() => {});

  setStatus(`Reading ${file.name}…`);
  let buffer;
  try {
    buffer = await ctx.decodeAudioData(await file.arrayBuffer());
  } catch {
    throw new UserError(`Cannot decode ${file.name}: choose a WAV, MP3, OGG or similar audio file.`);
  }
  ensureCurrent(attempt);
  conn.player.buffer = buffer;

  const destination = () => {
    const node = ctx.createMediaStreamDestination();
    node.channelCount = 1;
    node.channelCountMode = "explicit";
    return node;
  };
  const input = ctx.createGain(); // the source connects here when it starts
  conn.player.input = input;
  const sources = [];
  if (buffer.numberOfChannels >= 2) {
    const splitter = ctx.createChannelSplitter(buffer.numberOfChannels);
    input.connect(splitter);
    const agent = destination();
    const customer = destination();
    splitter.connect(agent, 0);
    splitter.connect(customer, 1);
    sources.push({ track: agent.stream.getAudioTracks()[0], stream: agent.stream, speaker: "agent" });
    sources.push({ track: customer.stream.getAudioTracks()[0], stream: customer.stream, speaker: "customer" });
  } else {
    const customer = destination();
    input.connect(customer);
    sources.push({ track: customer.stream.getAudioTracks()[0], stream: customer.stream, speaker: "customer" });
  }
  const monitor = ctx.createGain();
  monitor.gain.value = el.monitor.checked ? MONITOR_GAIN : 0;
  input.connect(monitor);
  monitor.connect(ctx.destination);
  conn.player.monitor = monitor;
  return sources;
}

function startRecording() {
  const player = conn.player;
  if (!player?.buffer || player.source) return;
  const attempt = conn.attempt;
  const source = player.ctx.createBufferSource();
  source.buffer = player.buffer;
  source.connect(player.input);
  source.onended = guard(attempt, recordingEnded);
  player.source = source;
  player.ctx.resume().catch(() => {});
  source.start();
  player.startedAt = player.ctx.currentTime;
}

function recordingEnded() {
  if (earshotAssist.state !== "live" || conn.ending) return;
  conn.ending = true;
  setStatus("The recording has ended: waiting for the last words…", "live");
  const attempt = conn.attempt;
  const deadline = Date.now() + FILE_TAIL_MS + FILE_FINAL_WAIT_MS;
  const check = guard(attempt, () => {
    if (call.open.size === 0 || Date.now() >= deadline) {
      stop("The recording has ended.");
      return;
    }
    conn.endTimer = setTimeout(check, 250);
  });
  conn.endTimer = setTimeout(check, FILE_TAIL_MS);
}

// ---- connection lifecycle ---------------------------------------------------------------

/** Releases audio and peer, and invalidates every pending step of the current call. */
function teardownLocal() {
  conn.attempt += 1;
  clearTimeout(conn.openTimer);
  clearTimeout(conn.endTimer);
  clearInterval(conn.clockTimer);
  closePeer(conn.peer);
  conn.peer = null;
  for (const stream of conn.streams) stopMicrophone(stream);
  conn.streams = [];
  if (conn.player) {
    const { ctx, source } = conn.player;
    if (source) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        /* never started */
      }
    }
    ctx.close().catch(() => {});
    conn.player = null;
  }
  conn.ending = false;
  for (const speaker of Object.keys(el.speaking)) setSpeaking(speaker, false);
  clearPartials();
  call.open.clear();
}

async function start() {
  // A call on screen from before is replaced; hang it up properly if it was still going.
  const previous = conn.session;
  teardownLocal();
  const attempt = conn.attempt;
  const wasActive = earshotAssist.state === "live" || earshotAssist.state === "connecting";
  if (previous && wasActive) api.deleteSession(previous).catch(() => {});
  conn.session = null;
  earshotAssist.session = null;
  clearCall();
  setState("connecting");

  try {
    const sources = await openSources(attempt);
    ensureCurrent(attempt);

    setStatus("Connecting…");
    const session = await api.createSession({ mode: "assist" });
    if (!isCurrent(attempt)) {
      api.deleteSession(session).catch(() => {});
      throw new Superseded();
    }
    conn.session = session;
    earshotAssist.session = session.session_id;
    rememberToken(session);

    conn.peer = createMultiTrackPeer(sources, {
      onOpen: guard(attempt, goLive),
      onMessage: guard(attempt, onMessage),
      onLost: guard(attempt, connectionLost),
    });
    const tracks = Object.fromEntries(sources.map(({ track, speaker }) => [track.id, speaker]));
    await negotiate(conn.peer.pc, (offer) => api.sendOffer(session, offer, tracks));
    ensureCurrent(attempt);

    conn.openTimer = setTimeout(
      guard(attempt, () => {
        if (earshotAssist.state === "connecting") fail("Could not connect: the audio link to the server did not open");
      }),
      CHANNEL_OPEN_TIMEOUT_MS,
    );
  } catch (error) {
    if (error instanceof Superseded || !isCurrent(attempt)) return;
    if (!(error instanceof UserError)) console.error("Earshot assist: connection failed", error);
    fail(describeError(error));
  }
}

function goLive() {
  clearTimeout(conn.openTimer);
  setState("live");
  conn.liveSince = Date.now();
  updateClock();
  conn.clockTimer = setInterval(updateClock, 1000);
  if (conn.player) {
    startRecording();
    setStatus(`Live — playing the recording (${formatClock(conn.player.buffer.duration)})`, "live");
  } else {
    setStatus(el.source.value === "mic" ? "Live — listening to the agent" : "Live — listening to the call", "live");
  }
}

function updateClock() {
  if (conn.liveSince !== null) el.clock.textContent = formatClock((Date.now() - conn.liveSince) / 1000);
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
  const attempt = conn.attempt;
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
  if (!isCurrent(attempt)) return;
  showSummaryLink(session);
  setStatus(`${message} The call summary is ready.`, "done");
}

function connectionLost() {
  const session = conn.session;
  const attempt = fail("Connection lost: the call has ended");
  // What was said so far is in the summary, stored when the server hangs up.
  if (session && call.finals > 0) hangUp.then(() => isCurrent(attempt) && showSummaryLink(session));
}

let hangUp = Promise.resolve();

/** Tears down, says what went wrong, and hangs the session up (best effort) so the server frees it. */
function fail(message) {
  const session = conn.session;
  teardownLocal();
  setStatus(message, "error");
  setState("error");
  if (session) hangUp = api.deleteSession(session).catch(() => {});
  return conn.attempt;
}

/** Turns what went wrong into a sentence that says what to do about it. */
function describeError(error) {
  if (error instanceof UserError) return error.message;
  switch (error?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "Microphone blocked: allow it in the browser and press Start again";
    case "NotFoundError":
    case "OverconstrainedError":
      return "Audio input not found: connect it (or pick another) and press Start again";
    case "NotReadableError":
    case "AbortError":
      return "The audio input is in use by another app: free it and press Start again";
    case "InsecureContextError":
      return `Microphone unavailable: ${error.message}`;
  }
  if (error instanceof api.ApiError) {
    return error.status === 0 ? "Cannot reach the server: check it is running" : `Server error: ${error.message}`;
  }
  return `Could not connect: ${error?.message ?? error}`;
}

// ---- the summary link -----------------------------------------------------------------

function rememberToken(session) {
  for (const storage of [() => sessionStorage, () => localStorage]) {
    try {
      storage().setItem(TOKEN_PREFIX + session.session_id, session.token);
    } catch {
      /* storage disabled: the fragment still carries the token */
    }
  }
}

/** Relative to this page (the client's folder), so it works under any mount prefix. */
export function summaryHref(session) {
  return `sessions/${encodeURIComponent(session.session_id)}/summary#token=${encodeURIComponent(session.token)}`;
}

function showSummaryLink(session) {
  const href = summaryHref(session);
  earshotAssist.summaryUrl = href;
  el.summaryLink.href = href;
  el.summaryLink.hidden = false;
}

function hideSummaryLink() {
  earshotAssist.summaryUrl = null;
  el.summaryLink.hidden = true;
  el.summaryLink.href = "#";
}

// ---- events ----------------------------------------------------------------------------

function onMessage(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    console.warn("Earshot assist: ignoring a data-channel message that is not JSON", data);
    return;
  }
  handleEvent(event);
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
    if (speakers.length && earshotAssist.state === "live" && !conn.player) {
      setStatus(`Live — listening to ${speakers.map((s) => speakerName(s).toLowerCase()).join(" and ")}`, "live");
    }
  },

  speech_start(event) {
    setSpeaking(event.speaker, true);
    call.open.set(lineKey(event.speaker, event.utterance_id), true);
  },

  speech_end(event) {
    setSpeaking(event.speaker, false);
    if (event.dropped) {
      call.open.delete(lineKey(event.speaker, event.utterance_id));
      // A dropped utterance (a cough, a click) gets no final to replace its partial.
      if (call.partials[event.speaker]?.utteranceId === event.utterance_id) clearPartial(event.speaker);
    }
  },

  partial(event) {
    if (event.utterance_id <= (call.lastFinal[event.speaker] ?? -1)) return; // late: its final is shown
    showPartial(event.speaker, event.utterance_id, event.committed ?? "", event.tentative ?? "");
  },

  final(event) {
    const speaker = event.speaker ?? "";
    call.lastFinal[speaker] = Math.max(call.lastFinal[speaker] ?? -1, event.utterance_id);
    call.open.delete(lineKey(speaker, event.utterance_id));
    const partial = call.partials[speaker];
    if (partial && partial.utteranceId <= event.utterance_id) clearPartial(speaker);
    appendFinal(event);
  },

  intent(event) {
    if (event.final === false) {
      showPartialIntents(event);
      return;
    }
    const key = lineKey(event.speaker, event.utterance_id);
    const line = call.lines.get(key);
    if (line) setLineIntents(line, event.labels);
    else call.pendingIntents.set(key, event);
    if (event.speaker === "customer") showCustomerIntents(event);
  },

  sentiment(event) {
    showSentiment(event);
  },

  topic(event) {
    showTopic(event);
  },

  suggestion(event) {
    showSuggestion(event);
  },

  call_metrics(event) {
    showMetrics(event);
  },

  summary_ready() {
    if (conn.session) showSummaryLink(conn.session);
  },

  error(event) {
    addNotice(event.code ?? "error", NOTICE_TEXT[event.code] ?? `Server: ${event.message ?? event.code ?? "error"}`, event);
  },
};

// ---- transcript -------------------------------------------------------------------------

const nearBottom = () => el.transcript.scrollHeight - el.transcript.scrollTop - el.transcript.clientHeight < 48;

/** Keeps the newest words in view unless the agent has scrolled up to read. */
function keepScrolled(update) {
  const follow = nearBottom();
  update();
  if (follow) el.transcript.scrollTop = el.transcript.scrollHeight;
}

function chip(label, { score, count, provisional } = {}) {
  const name = intentName(label);
  const node = h("span", { class: "as-chip", "data-intent": label, title: score === undefined ? name : `${name}: ${fixed(score, 2)}` }, name);
  if (count !== undefined) node.append(h("b", { class: "as-chip-count", text: `×${count}` }));
  if (provisional) node.classList.add("provisional");
  return node;
}

function appendFinal(event) {
  const speaker = event.speaker ?? "";
  const key = lineKey(speaker, event.utterance_id);
  if (call.lines.has(key)) return; // a repeat (e.g. a resent event)
  const start = num(event.start) ?? num(event.start_s) ?? 0;
  const line = h(
    "li",
    { class: "final", "data-speaker": speaker, "data-utterance-id": event.utterance_id, "data-seq": event.seq, "data-start": start },
    h("span", { class: "as-line-head" },
      h("span", { class: "as-who", text: speakerName(speaker) }),
      h("time", { class: "as-time", text: formatClock(start), title: `${start.toFixed(1)} s into the call` }),
      h("span", { class: "as-chips as-line-intents" })),
    h("span", { class: "as-text", text: event.text ?? "" }),
  );
  call.lines.set(key, line);
  call.finals += 1;
  el.transcriptEmpty.hidden = true;

  keepScrolled(() => {
    // In order of when the words were said: the two sides' finals can arrive out of order.
    let after = el.lines.lastElementChild;
    while (after && Number(after.dataset.start) > start) after = after.previousElementSibling;
    if (after) after.after(line);
    else el.lines.prepend(line);
  });

  const pending = call.pendingIntents.get(key);
  if (pending) {
    call.pendingIntents.delete(key);
    setLineIntents(line, pending.labels);
  }
}

function setLineIntents(line, labels) {
  const holder = line.querySelector(".as-line-intents");
  holder.replaceChildren(...(labels ?? []).map((l) => chip(l.name, { score: l.score })));
}

function partialNode(speaker) {
  let entry = call.partials[speaker];
  if (!entry) {
    const node = h("p", { class: "partial", "data-speaker": speaker },
      h("span", { class: "as-who", text: speakerName(speaker) }),
      h("span", { class: "committed" }), " ", h("span", { class: "tentative" }),
      h("span", { class: "as-chips as-line-intents" }));
    entry = call.partials[speaker] = { utteranceId: null, node };
    keepScrolled(() => el.partials.append(node));
  }
  return entry;
}

function showPartial(speaker, utteranceId, committed, tentative) {
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

function showPartialIntents(event) {
  const entry = call.partials[event.speaker];
  if (entry && entry.utteranceId === event.utterance_id) {
    entry.node.querySelector(".as-line-intents").replaceChildren(
      ...(event.labels ?? []).map((l) => chip(l.name, { score: l.score, provisional: true })),
    );
  }
  if (event.speaker === "customer" && (event.labels ?? []).length) showCurrentIntents(event.labels, true);
}

function clearPartial(speaker) {
  call.partials[speaker]?.node.remove();
  delete call.partials[speaker];
}

function clearPartials() {
  for (const speaker of Object.keys(call.partials)) clearPartial(speaker);
}

function setSpeaking(speaker, on) {
  const indicator = el.speaking[speaker];
  if (indicator) indicator.hidden = !on;
}

// ---- intents ----------------------------------------------------------------------------

function showCurrentIntents(labels, provisional = false) {
  el.intentsCurrent.replaceChildren(
    ...(labels.length
      ? labels.map((l) => chip(l.name, { score: l.score, provisional }))
      : [h("span", { class: "muted", text: "No clear intent in the last line" })]),
  );
  el.intentsCurrent.dataset.provisional = String(provisional);
}

function showCustomerIntents(event) {
  const labels = event.labels ?? [];
  showCurrentIntents(labels);
  const key = lineKey("customer", event.utterance_id);
  if (call.counted.has(key)) return;
  call.counted.add(key);
  for (const { name } of labels) call.counts.set(name, (call.counts.get(name) ?? 0) + 1);
  const sorted = [...call.counts.entries()].sort((a, b) => b[1] - a[1]);
  el.intentsCounts.replaceChildren(
    ...(sorted.length ? [h("span", { class: "as-chips-label", text: "This call:" })] : []),
    ...sorted.map(([name, count]) => chip(name, { count })),
  );
}

// ---- sentiment ----------------------------------------------------------------------------

function showSentiment(event) {
  const score = num(event.score);
  if (score === null) return;
  call.scores.set(event.utterance_id ?? call.scores.size, score);
  const label = MOOD_NAMES[event.label] ? event.label : score > 0.05 ? "positive" : score < -0.05 ? "negative" : "neutral";
  el.sentiment.dataset.label = label;
  el.mood.textContent = `${MOOD_NAMES[label]} ${signed(score)}`;

  const trendLabel = TREND_SIGNS[event.trend_label] ? event.trend_label : "steady";
  el.trend.dataset.trend = trendLabel;
  el.trend.textContent = `${TREND_SIGNS[trendLabel]} ${trendLabel}`;
  el.trend.title = `Trend ${signed(event.trend)} over the customer's recent lines`;

  const clamped = Math.max(-1, Math.min(1, score));
  el.meter.setAttribute("aria-valuenow", clamped.toFixed(2));
  el.meterMark.hidden = false;
  el.meterMark.style.left = `${((clamped + 1) / 2) * 100}%`;

  let history = [...call.scores.values()];
  if (history.length < 2 && Array.isArray(event.history) && event.history.length > history.length) history = event.history;
  el.spark.replaceChildren(sparkline(history.slice(-SPARK_POINTS), label));
}

/** A small line of scores in -1..1, oldest left; the newest point is dotted. */
export function sparkline(scores, label = "neutral") {
  const W = 160, H = 36, pad = 3;
  const root = svg("svg", {
    class: "as-sparkline", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `Customer sentiment over the call: ${scores.map((s) => s.toFixed(2)).join(", ")}`,
  });
  const y = (s) => pad + ((1 - Math.max(-1, Math.min(1, s))) / 2) * (H - 2 * pad);
  const x = (i) => (scores.length < 2 ? W / 2 : pad + (i / (scores.length - 1)) * (W - 2 * pad));
  root.append(svg("line", { class: "zero", x1: 0, x2: W, y1: y(0), y2: y(0) }));
  if (scores.length > 1) {
    root.append(svg("polyline", {
      class: "line", points: scores.map((s, i) => `${x(i).toFixed(1)},${y(s).toFixed(1)}`).join(" "),
    }));
  }
  if (scores.length) {
    const last = scores.length - 1;
    root.append(svg("circle", { class: `dot ${label}`, cx: x(last), cy: y(scores[last]), r: 2.6 }));
  }
  return root;
}

// ---- topic ------------------------------------------------------------------------------

function showTopic(event) {
  const label = event.label || (event.topic ? String(event.topic).replaceAll("_", " ") : "");
  if (!label) return;
  el.topicLabel.textContent = label;
  el.topic.dataset.topic = event.topic ?? "";
  const bits = [];
  if (num(event.score) !== null) bits.push(`match ${fixed(event.score, 2)}`);
  if (event.source) bits.push(event.source === "llm" ? "named by the AI" : "by similarity");
  const others = (event.candidates ?? []).filter((c) => c.name !== event.topic).slice(0, 2);
  if (others.length) bits.push(`also: ${others.map((c) => String(c.name).replaceAll("_", " ")).join(", ")}`);
  el.topicMeta.textContent = bits.join(" · ");
}

// ---- suggestion ----------------------------------------------------------------------------

function showSuggestion(event) {
  const utteranceId = num(event.utterance_id) ?? call.suggestionFor;
  if (utteranceId < call.suggestionFor) return; // an answer to older words: the shown one is newer
  if (!event.text) return;
  call.suggestionFor = utteranceId;
  const changed = el.suggestionText.textContent !== event.text;
  el.suggestionText.textContent = event.text;
  el.suggestion.dataset.state = event.final === false ? "refining" : "final";
  el.suggestion.dataset.source = event.source ?? "";
  el.suggestionSource.hidden = !event.source;
  el.suggestionSource.textContent = SOURCE_NAMES[event.source] ?? event.source ?? "";
  el.suggestionSource.dataset.source = event.source ?? "";
  el.suggestionSource.title =
    event.source === "llm" ? "Drafted by the language model from the knowledge base" : "An answer from the knowledge base";
  el.suggestionRefining.hidden = event.final !== false;
  el.copy.disabled = false;

  const customerLine = call.lines.get(lineKey("customer", utteranceId));
  const meta = [];
  if (customerLine) meta.push(`re: “${shorten(customerLine.querySelector(".as-text").textContent, 60)}”`);
  const ids = (event.knowledge_ids ?? []).filter(Boolean);
  if (ids.length) meta.push(`KB ${ids.join(", ")}`);
  const latency = num(event.latency_s);
  if (latency !== null) meta.push(latency < 1 ? `${Math.round(latency * 1000)} ms` : `${latency.toFixed(1)} s`);
  el.suggestionMeta.textContent = meta.join(" · ");

  if (changed) {
    el.suggestion.classList.remove("fresh");
    void el.suggestion.offsetWidth; // restart the highlight animation
    el.suggestion.classList.add("fresh");
  }
}

async function copySuggestion() {
  const text = el.suggestionText.textContent.trim();
  if (!text || el.suggestion.dataset.state === "empty") return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Older browsers, or no clipboard permission: select the text and copy that.
    const range = document.createRange();
    range.selectNodeContents(el.suggestionText);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
  }
  el.copy.textContent = ok ? "Copied" : "Select & copy";
  setTimeout(() => (el.copy.textContent = "Copy"), 1500);
}

// ---- metrics --------------------------------------------------------------------------------

function showMetrics(event) {
  const share = event.talk_share ?? {};
  const agent = num(share.agent) ?? 0;
  const customer = num(share.customer) ?? 0;
  const total = agent + customer;
  const agentPct = total > 0 ? (agent / total) * 100 : 50;
  el.shareAgent.style.width = `${agentPct}%`;
  el.shareCustomer.style.width = `${100 - agentPct}%`;
  el.share.dataset.empty = String(total <= 0);
  el.shareAgentPct.textContent = total > 0 ? `${Math.round(agentPct)}%` : "–";
  el.shareCustomerPct.textContent = total > 0 ? `${Math.round(100 - agentPct)}%` : "–";
  el.share.setAttribute(
    "aria-label",
    total > 0 ? `Talk share: agent ${Math.round(agentPct)}%, customer ${Math.round(100 - agentPct)}%` : "Talk share: no speech yet",
  );

  el.m.call.textContent = formatClock(event.call_s);
  el.m.talk.textContent = pair(event.talk_s, (s) => (num(s) === null ? "–" : formatClock(s)));
  el.m.rate.textContent = pair(event.talk_rate_wps, (v) => fixed(v, 1));
  el.m.interrupts.textContent = pair(event.interruptions, (v) => (num(v) === null ? "–" : String(v)));
  el.m.silence.textContent = formatSeconds(event.silence_s);
  const longest = num(event.longest_silence_s);
  el.m.long.textContent = `${event.long_silences ?? 0}${longest ? ` (max ${formatSeconds(longest)})` : ""}`;
  el.m.overlap.textContent = formatSeconds(event.overlap_s);
  el.m.ratio.textContent = num(event.speech_to_silence) === null ? "–" : `${fixed(event.speech_to_silence, 1)} : 1`;
}

// ---- notices ----------------------------------------------------------------------------------

function addNotice(code, text, event = {}) {
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

function clearCall() {
  earshotAssist.events.length = 0;
  call.lines.clear();
  call.pendingIntents.clear();
  call.lastFinal = {};
  call.open.clear();
  call.counted.clear();
  call.counts.clear();
  call.scores.clear();
  call.suggestionFor = -1;
  call.finals = 0;
  clearPartials();
  el.lines.replaceChildren();
  el.transcriptEmpty.hidden = false;
  el.notices.replaceChildren();
  hideSummaryLink();
  conn.liveSince = null;
  el.clock.textContent = "0:00";

  el.suggestion.dataset.state = "empty";
  el.suggestion.classList.remove("fresh");
  el.suggestionText.textContent = "A reply appears here after the customer speaks.";
  el.suggestionSource.hidden = true;
  el.suggestionRefining.hidden = true;
  el.suggestionMeta.textContent = "";
  el.copy.disabled = true;

  el.sentiment.dataset.label = "none";
  el.mood.textContent = "—";
  el.trend.textContent = "";
  el.trend.dataset.trend = "none";
  el.meterMark.hidden = true;
  el.meter.setAttribute("aria-valuenow", "0");
  el.spark.replaceChildren(h("span", { class: "muted", text: "Waiting for the customer" }));

  el.topicLabel.textContent = "Not yet known";
  el.topicMeta.textContent = "";
  delete el.topic.dataset.topic;

  el.intentsCurrent.replaceChildren(h("span", { class: "muted", text: "Nothing yet" }));
  el.intentsCounts.replaceChildren();

  showMetrics({ call_s: 0 });
}

// ---- page setup ----------------------------------------------------------------------------------

function init() {
  el.start.addEventListener("click", start);
  el.stop.addEventListener("click", () => stop("Call ended."));
  el.copy.addEventListener("click", copySuggestion);
  el.source.addEventListener("change", showSourceFields);
  el.refreshDevices.addEventListener("click", () => refreshDevices());
  navigator.mediaDevices?.addEventListener?.("devicechange", () => {
    if (el.source.value === "mic+device") refreshDevices();
  });
  el.monitor.addEventListener("change", () => {
    if (conn.player?.monitor) conn.player.monitor.gain.value = el.monitor.checked ? MONITOR_GAIN : 0;
  });
  el.file.addEventListener("change", () => {
    if (el.file.files?.length && el.source.value !== "file") {
      el.source.value = "file";
      showSourceFields();
    }
  });
  // Closing the overlay mid-call hangs up properly, so the server stores the summary now.
  window.addEventListener("pagehide", () => {
    if (conn.session && (earshotAssist.state === "live" || earshotAssist.state === "connecting")) {
      api.deleteSession(conn.session).catch(() => {});
    }
  });

  clearCall();
  showSourceFields();
  setState("idle");
}

init();

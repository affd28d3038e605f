// What the pages share: building and finding DOM nodes, the session token a report
// or summary link carries, the report and summary pages' loading and errors, holding
// one call at a time (the interview and assist pages), and the assist call's names,
// intent chips and talk share (the overlay and the summary).

import { ApiError } from "./api.js";
import { identityCredential } from "./credential.js";

export const SVG_NS = "http://www.w3.org/2000/svg";
export const TOKEN_PREFIX = "earshot.token.";

/**
 * An element with attributes and children; strings become text nodes (never HTML).
 * `style` is an object of CSS properties, set through the DOM: the server's Content-Security-Policy
 * refuses style attributes (as it refuses inline scripts).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
export const byRole = (role) => document.querySelector(`[data-role="${role}"]`);

/** tone: info | live | error | done (only changes the colour) */
export function showStatus(node, text, tone = "info") {
  node.textContent = text;
  node.dataset.tone = tone;
}

export const capitalise = (text) => (text ? text[0].toUpperCase() + text.slice(1) : text);

/** An SVG element with attributes and, optionally, text. */
export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The session id of a page served at /sessions/{id}/{page} (page: "report" or "summary"). */
export function sessionIdFromPath(pathname, page) {
  const match = new RegExp(`/sessions/([^/]+)/${page}/?$`).exec(pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

const STORAGES = [() => sessionStorage, () => localStorage];

/** The token from the URL fragment (#token=...), else where the page that opened the link left it. */
export function tokenFor(sessionId, hash) {
  const fromHash = new URLSearchParams(hash.replace(/^#/, "")).get("token");
  if (fromHash) return fromHash;
  for (const storage of STORAGES) {
    try {
      const token = storage().getItem(TOKEN_PREFIX + sessionId);
      if (token) return token;
    } catch {
      /* storage disabled */
    }
  }
  return null;
}

/**
 * Leaves a session's token where tokenFor looks: this tab's sessionStorage, and
 * localStorage too for a link that opens in another tab.
 */
export function rememberToken(session, { otherTabs = false } = {}) {
  for (const storage of otherTabs ? STORAGES : STORAGES.slice(0, 1)) {
    try {
      storage().setItem(TOKEN_PREFIX + session.session_id, session.token);
    } catch {
      /* storage disabled: the fragment still carries the token */
    }
  }
}

/** What the server refused (status, code) or why it could not be asked (status 0). */
export class PageError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * GET /api/sessions/{id}/{kind} with the token. Relative to /sessions/{id}/{page},
 * so it works under any mount prefix. `isReadable(payload)` says whether the page
 * can show what came back.
 */
export async function fetchSessionDocument(sessionId, token, kind, isReadable) {
  let response;
  try {
    response = await fetch(`../../api/sessions/${encodeURIComponent(sessionId)}/${kind}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
  } catch {
    throw new PageError(0, "The server could not be reached.");
  }
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload?.error ?? {};
    throw new PageError(response.status, error.message ?? `HTTP ${response.status} ${response.statusText}`.trim(), error.code);
  }
  if (!payload || typeof payload !== "object" || !isReadable(payload)) {
    throw new PageError(500, `The server sent a ${kind} this page cannot read.`);
  }
  return payload;
}

/**
 * Boots a page that shows one session's document (the report, the summary): the
 * session id from the path, the token from the link, then `load` and `render`.
 * `load` throws errors with a numeric `status` for what the server refused;
 * anything else is a bug in the page, shown as 500, with the hint `errorHints[status]`.
 */
export async function openSessionPage({ page, what, noSession, errorHints, load, render }) {
  const showError = (status, message) => showPageError(page, status, message, errorHints);
  const sessionId = sessionIdFromPath(location.pathname, page);
  if (!sessionId) {
    showError(404, noSession);
    return;
  }
  // No session token (a manager opening a call from calls.html): this tab's identity credential
  // (server --auth on), which the policy lets read the summaries of the team's calls.
  const token = tokenFor(sessionId, location.hash) ?? (identityCredential() || null);
  if (!token) {
    showError(401, "This link has no access token.");
    return;
  }
  try {
    render(await load(sessionId, token));
  } catch (error) {
    if (typeof error?.status === "number") showError(error.status, error.message);
    else {
      console.error(error);
      showError(500, `The ${what} could not be displayed.`);
    }
  }
}

/** Hides the page's document (data-role `page`) and shows its error box (data-testid `page`-error). */
function showPageError(page, status, message, hints) {
  document.body.dataset.state = "error";
  byRole("loading").hidden = true;
  byRole(page).hidden = true;
  const box = byTestId(`${page}-error`);
  box.hidden = false;
  box.dataset.status = String(status);
  const text = capitalise(message);
  byRole("error-message").textContent = status ? `${text} (HTTP ${status})` : text;
  byRole("error-hint").textContent = hints[status] ?? "Try reloading the page.";
}

// ---- one call at a time (the interview and assist pages) ----------------------------

/** Thrown by a step of a call that was abandoned (Stop, or a newer Start) while it waited. */
export class Superseded extends Error {}

/**
 * Counts the calls a page starts and abandons: `next()` invalidates the current one,
 * so the async steps and callbacks of an abandoned call can tell they are stale.
 */
export class Attempts {
  current = 0;

  next() {
    this.current += 1;
    return this.current;
  }

  isCurrent(attempt) {
    return attempt === this.current;
  }

  ensureCurrent(attempt) {
    if (!this.isCurrent(attempt)) throw new Superseded();
  }

  /** `fn` that runs only while `attempt` is the live one (callbacks outlive their call). */
  guard(attempt, fn) {
    return (...args) => {
      if (this.isCurrent(attempt)) fn(...args);
    };
  }
}

// The server closes the call for these and asks for a reconnect: the same session resumes, on
// another server instance (server_draining: this one is shutting down).
export const CALL_MOVING_CODES = new Set(["server_draining", "call_taken_over"]);

// How long a reconnect keeps sending its offer while the server asks to wait.
export const OFFER_WAIT_MS = 40000;
const OFFER_RETRY_MS = 2000; // when the server gives no Retry-After
const OFFER_RETRY_MAX_MS = 5000;

/**
 * The offer (`send()`), sent again while the server asks to wait (ApiError.worthWaiting): it still
 * holds the old connection (ICE consent takes a while to fail), or a stopped instance's hold on
 * the call lapses in a few seconds (503 call_moving, with Retry-After). The same offer can be
 * sent again: it is still unanswered. Gives up at `OFFER_WAIT_MS`, or when `attempt` is abandoned.
 */
export async function sendOfferPatiently(send, attempts, attempt, onWait = () => {}) {
  const deadline = Date.now() + OFFER_WAIT_MS;
  for (;;) {
    attempts.ensureCurrent(attempt);
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof ApiError && error.worthWaiting) || Date.now() > deadline) throw error;
      onWait(error);
      const waitMs = error.retryAfterS ? error.retryAfterS * 1000 : OFFER_RETRY_MS;
      await new Promise((resolve) => setTimeout(resolve, Math.min(waitMs, OFFER_RETRY_MAX_MS)));
    }
  }
}

/**
 * Turns what went wrong while starting a call into a sentence that says what to do
 * about it. The page names the button to press again and says what a missing
 * (`notFound`) or a busy (`inUse`) audio input means for it.
 */
export function describeCallError(error, { action, notFound, inUse }) {
  switch (error?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return `Microphone blocked: allow it in the browser and press ${action} again`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `${notFound} and press ${action} again`;
    case "NotReadableError":
    case "AbortError":
      return `${inUse}: free it and press ${action} again`;
    case "InsecureContextError":
      return `Microphone unavailable: ${error.message}`;
    case "RelayError": // signalling.js: relay forced and the TURN server gave no relay candidate
      return error.message;
  }
  if (error instanceof ApiError) {
    return error.status === 0 ? "Cannot reach the server: check it is running" : `Server error: ${error.message}`;
  }
  return `Could not connect: ${error?.message ?? error}`;
}

/** A data-channel message as an event object, or null (with a warning) when it is not one. */
export function parseEvent(data, page) {
  let event = null;
  try {
    event = JSON.parse(data);
  } catch {
    /* not JSON */
  }
  if (event && typeof event === "object") return event;
  console.warn(`${page}: ignoring a data-channel message that is not a JSON object`, data);
  return null;
}

// ---- the assist call: names, intent chips, talk share (the overlay and the summary) ----

export const SPEAKER_NAMES = { agent: "Agent", customer: "Customer" };
export const INTENT_NAMES = {
  billing_inquiry: "Billing",
  complaint: "Complaint",
  cancellation: "Cancellation",
  technical_problem: "Technical problem",
  account_change: "Account change",
  order_status: "Order status",
  feedback_praise: "Praise/feedback",
  escalation: "Escalation",
  greeting_other: "Greeting/other",
};
export const MOOD_NAMES = { negative: "Negative", neutral: "Neutral", positive: "Positive" };
export const TREND_SIGNS = { improving: "↗", steady: "→", worsening: "↘" };

export const intentName = (name) => INTENT_NAMES[name] ?? String(name ?? "").replaceAll("_", " ");
export const speakerName = (speaker) => SPEAKER_NAMES[speaker] ?? (speaker || "Speaker");

export const moodOf = (score) => (score > 0.05 ? "positive" : score < -0.05 ? "negative" : "neutral");
/** The server's mood label, or the one its score falls in. */
export const moodLabel = (label, score) => (MOOD_NAMES[label] ? label : moodOf(score));

/** An intent as a chip: with its score in the tooltip, a count, or marked provisional (a partial's). */
export function intentChip(name, { score, count, provisional } = {}) {
  const label = intentName(name);
  const title = score === undefined ? label : `${label}: ${fixed(score, 2)}`;
  const chip = h("span", { class: "as-chip", "data-intent": name, title }, label);
  if (count !== undefined) chip.append(h("b", { class: "as-chip-count", text: `×${count}` }));
  if (provisional) chip.classList.add("provisional");
  return chip;
}

/** How the agent and the customer shared the talking (`share`: seconds or fractions each), for a share bar. */
export function talkShare(share) {
  const agent = num(share?.agent) ?? 0;
  const customer = num(share?.customer) ?? 0;
  const total = agent + customer;
  const agentPct = total > 0 ? (agent / total) * 100 : 50;
  const said = (pct) => (total > 0 ? `${Math.round(pct)}%` : "–");
  return {
    empty: total <= 0,
    agentPct,
    customerPct: 100 - agentPct,
    agentText: said(agentPct),
    customerText: said(100 - agentPct),
    label: total > 0 ? `Talk share: agent ${Math.round(agentPct)}%, customer ${Math.round(100 - agentPct)}%` : null,
  };
}

// ---- numbers --------------------------------------------------------------------------

/** A finite number, or null for anything else (fields of server JSON may be missing). */
export const num = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);
export const fixed = (value, digits = 1) => (num(value) === null ? "–" : num(value).toFixed(digits));

/** -0.25 -> "−0.25", 0 -> "±0.00": a sentiment score with its sign. */
export function signed(value, digits = 2) {
  const v = num(value);
  if (v === null) return "–";
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${Math.abs(v).toFixed(digits)}`;
}

/** 3.2 -> "0:03", 754 -> "12:34", 3725 -> "1:02:05" */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(num(seconds) ?? 0));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

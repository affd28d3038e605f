// What the report, summary and assist pages share: building DOM nodes, the
// session token a report or summary link carries, and the assist call's names.

export const SVG_NS = "http://www.w3.org/2000/svg";
export const TOKEN_PREFIX = "earshot.token.";

/** An element with attributes and children; strings become text nodes (never HTML). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

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

/** The token from the URL fragment (#token=...), else where the page that opened the link left it. */
export function tokenFor(sessionId, hash) {
  const fromHash = new URLSearchParams(hash.replace(/^#/, "")).get("token");
  if (fromHash) return fromHash;
  for (const storage of [() => sessionStorage, () => localStorage]) {
    try {
      const token = storage().getItem(TOKEN_PREFIX + sessionId);
      if (token) return token;
    } catch {
      /* storage disabled */
    }
  }
  return null;
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
 * anything else is a bug in the page, shown as 500.
 */
export async function openSessionPage({ page, what, noSession, load, render, showError }) {
  const sessionId = sessionIdFromPath(location.pathname, page);
  if (!sessionId) {
    showError(404, noSession);
    return;
  }
  const token = tokenFor(sessionId, location.hash);
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

// ---- the assist call's names ------------------------------------------------------

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

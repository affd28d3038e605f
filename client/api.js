// HTTP calls to the Earshot server. URLs are relative so the page works
// wherever the server mounts it.

import { askForCredential, identityCredential } from "./credential.js";

/** An error the server reported as {"error": {"code", "message"}}, or a transport failure. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached
    this.code = code;
    this.retryAfterS = retryAfterS; // the server's Retry-After, when it sent one
  }

  /**
   * A reconnect the server asks to send again: the old connection is still held (here, or by an
   * instance that stopped and whose hold lapses soon), or the instance holding the call is unreachable.
   */
  get worthWaiting() {
    return this.code === "session_live" || ["call_moving", "instance_unreachable"].includes(this.code);
  }

  /** The session no longer exists, has ended, or the token is wrong: resuming is pointless. */
  get sessionGone() {
    return [401, 403, 404, 410].includes(this.status) || ["session_ended", "session_expired"].includes(this.code);
  }
}

async function request(method, path, { token, body, keepalive = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;

  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive, // lets the DELETE on Stop finish even if the page is closing
    });
  } catch {
    // fetch only rejects on network failure, never on an HTTP status.
    throw new ApiError(0, "network", "cannot reach the server");
  }

  const payload = await readJson(response);
  if (!response.ok) {
    const error = payload?.error ?? {};
    const retryAfter = Number.parseFloat(response.headers.get("Retry-After") ?? "");
    throw new ApiError(
      response.status,
      error.code ?? "http_error",
      error.message ?? `HTTP ${response.status} ${response.statusText}`.trim(),
      Number.isFinite(retryAfter) ? retryAfter : null,
    );
  }
  return payload;
}

async function readJson(response) {
  // Tolerate empty bodies (204 on DELETE) and non-JSON error pages from proxies.
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const sessionPath = (sessionId) => `api/sessions/${encodeURIComponent(sessionId)}`;

/**
 * mode: "interview" (the interviewer talks) or "transcribe" (transcript and pace only). -> {session_id, token}
 * Sends this tab's identity credential when it has one (credential.js); a server with --auth on that
 * refuses it (401) gets the "Access key" field shown.
 */
export async function createSession({ mode = "interview", role, difficulty }) {
  try {
    return await request("POST", "api/sessions", { token: identityCredential(), body: { mode, role, difficulty } });
  } catch (error) {
    if (error.status !== 401) throw error;
    askForCredential();
    throw new ApiError(401, error.code, "this server needs an access key: enter it above, then start again");
  }
}

/**
 * -> {sdp, type: "answer"}. tracks (assist mode only, optional): {"<MediaStreamTrack.id>": "agent" | "customer"},
 * which speaker each audio track of the offer carries.
 */
export function sendOffer(session, description, tracks) {
  const body = { sdp: description.sdp, type: description.type };
  if (tracks) body.tracks = tracks;
  return request("POST", `${sessionPath(session.session_id)}/offer`, { token: session.token, body });
}

/** -> {session_id, state, mode, role, difficulty, finals: [...], pace: {...} | null} */
export function getSession(session) {
  return request("GET", sessionPath(session.session_id), { token: session.token });
}

export function deleteSession(session) {
  return request("DELETE", sessionPath(session.session_id), { token: session.token, keepalive: true });
}

/** What a call stores, for how long, what is removed first -> {retention_s, retention, redacted, consent: {mode: sentence}} */
export function getPrivacy() {
  return request("GET", "api/privacy");
}

/** An assist call's summary -> {session_id, transcript, intents, topic, sentiment, metrics, ...}; 404 no_summary before it. */
export function getSummary(session) {
  return request("GET", `${sessionPath(session.session_id)}/summary`, { token: session.token });
}

/**
 * An agent's correction of one utterance's intents: {utterance_id, speaker, add: [label], remove: [label]}
 * -> {labels, added, removed, head_labels, ...}: `labels` is what the utterance carries now.
 */
export function correctIntents(session, correction) {
  return request("POST", `${sessionPath(session.session_id)}/corrections`, { token: session.token, body: correction });
}

/**
 * The call's stored intent corrections -> {session_id, label_set, corrections: [{speaker, utterance_id, labels,
 * added, removed, head_labels, agent, at}]}, one per corrected utterance (none yet: an empty list).
 */
export function getCorrections(session) {
  return request("GET", `${sessionPath(session.session_id)}/corrections`, { token: session.token });
}

// What a call stores, and for how long, said on the page before the microphone opens. The
// sentence is the server's (GET /api/privacy: its retention and redaction settings), one per
// mode, so the page never states a number the server does not keep to.

import { getPrivacy } from "./api.js";

// Until the notice has arrived (or if it cannot): true, with no number to get wrong.
const GENERAL = "This call is transcribed and the transcript is stored on this server.";

let sentences = null; // mode -> sentence, once the server has answered

const element = () => document.querySelector("[data-testid=consent]");

/** Fetches the notice, then shows the sentence for the mode `currentMode()` names by then. */
export async function loadConsent(currentMode) {
  try {
    sentences = (await getPrivacy())?.consent ?? null;
  } catch {
    sentences = null; // the general sentence stands
  }
  showConsent(currentMode());
}

/** Shows the sentence for `mode` now (the general one if the notice is not in yet): call it before the microphone opens. */
export function showConsent(mode) {
  const el = element();
  if (!el) return;
  el.textContent = sentences?.[mode] ?? GENERAL;
  el.hidden = false;
}

/** The mode was changed: the sentence follows, once one is shown. */
export function consentFollows(mode) {
  if (element() && !element().hidden) showConsent(mode);
}

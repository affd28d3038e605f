// The assist overlay's transcript events: each side's speech, partials, finals and intents onto the
// transcript (assist-view.js) and the customer's intents onto their card (assist-cards.js). It keeps
// what those events have said so far: which utterances still await their final (a recording that ends
// waits for them), and each side's latest final (a partial older than it is late).

import * as cards from "./assist-cards.js";
import * as view from "./assist-view.js";

const call = {
  lastFinal: {}, // speaker -> highest utterance_id with a final
  open: new Set(), // speaker:utterance_id of each utterance that awaits its final
};

/** How many utterances have started and still await their final (or their drop). */
export const awaitingFinals = () => call.open.size;

/** The connection went: no utterance of it will get a final now. */
export function forgetOpenUtterances() {
  call.open.clear();
}

/** A new call: nothing said yet. */
export function clearTranscriptState() {
  call.lastFinal = {};
  call.open.clear();
}

/** One handler per event type (assist.js routes every event). */
export const transcriptHandlers = {
  speech_start(event) {
    view.setSpeaking(event.speaker, true);
    call.open.add(view.lineKey(event.speaker, event.utterance_id));
  },

  speech_end(event) {
    view.setSpeaking(event.speaker, false);
    if (event.dropped) {
      call.open.delete(view.lineKey(event.speaker, event.utterance_id));
      // A dropped utterance (a cough, a click) gets no final to replace its partial.
      if (view.partialUtterance(event.speaker) === event.utterance_id) view.clearPartial(event.speaker);
    }
  },

  no_final(event) {
    // Whisper found no words in it (or its decode failed): nothing will replace its partial.
    call.open.delete(view.lineKey(event.speaker, event.utterance_id));
    if (view.partialUtterance(event.speaker) === event.utterance_id) view.clearPartial(event.speaker);
  },

  partial(event) {
    if (event.utterance_id <= (call.lastFinal[event.speaker] ?? -1)) return; // late: its final is shown
    view.showPartial(event.speaker, event.utterance_id, event.committed ?? "", event.tentative ?? "");
  },

  final(event) {
    const speaker = event.speaker ?? "";
    call.lastFinal[speaker] = Math.max(call.lastFinal[speaker] ?? -1, event.utterance_id);
    call.open.delete(view.lineKey(speaker, event.utterance_id));
    // The next utterance may already be showing partials; only clear this one's (or older) words.
    const partial = view.partialUtterance(speaker);
    if (partial !== null && partial <= event.utterance_id) view.clearPartial(speaker);
    view.appendFinal(event);
  },

  intent(event) {
    const customer = event.speaker === "customer";
    if (event.final === false) {
      view.showPartialIntents(event);
      if (customer && (event.labels ?? []).length) cards.showCurrentIntents(event.labels, true);
      return;
    }
    view.showLineIntents(event);
    if (customer) cards.showCustomerIntents(...view.asCorrected(event)); // the agent's click stands
  },
};

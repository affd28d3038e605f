// One-click intent corrections on the assist overlay's transcript: each final line shows its
// intents as chips; clicking a chip removes that label, the "+" list adds one of the label
// set's others. Each click is one POST /api/sessions/{id}/corrections; the chips then show
// the labels the server answered with (never a guess of the page's own). What training
// learns from is stored by the server (server/feedback_api.py).

import * as api from "./api.js";
import { byRole, fixed, h, intentName } from "./page.js";

/**
 * The chips of a final line, correctable: `labels` [{name, score?}], `choices` every label of the
 * label set (the intent event's scores), for the add list. The choices stay on the line for later renders.
 */
export function renderLineIntents(line, labels, choices) {
  if (choices) line.dataset.choices = JSON.stringify(choices);
  const all = JSON.parse(line.dataset.choices ?? "[]");
  const names = (labels ?? []).map((l) => l.name);
  line.dataset.labels = JSON.stringify(names);
  const chips = (labels ?? []).map((l) => {
    const label = intentName(l.name);
    const said = l.score === undefined ? label : `${label}: ${fixed(l.score, 2)}`;
    return h("button", {
      type: "button", class: "as-chip as-chip-edit", "data-intent": l.name, "data-action": "remove",
      title: `${said} (click to remove)`, "aria-label": `Remove intent ${label}`,
    }, label, h("span", { class: "as-chip-x", "aria-hidden": "true", text: "×" }));
  });
  const others = all.filter((name) => !names.includes(name));
  const add = others.length
    ? h("select", { class: "as-add-intent", "data-action": "add", title: "Add an intent", "aria-label": "Add an intent" },
        h("option", { value: "", text: "+" }),
        others.map((name) => h("option", { value: name, text: intentName(name) })))
    : null;
  line.querySelector(".as-line-intents").replaceChildren(...chips, ...(add ? [add] : []));
}

/**
 * Listens for clicks on the transcript's chips. `sessionOf()`: the call's {session_id, token};
 * `failed(message)`: shows a correction the server refused (the chips stay as they were).
 */
export function initFeedback(sessionOf, failed) {
  const lines = byRole("lines");
  lines.addEventListener("click", (event) => {
    const chip = event.target.closest("button[data-action=remove]");
    if (chip) send(chip.closest("li.final"), { remove: [chip.dataset.intent] }, sessionOf, failed);
  });
  lines.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-action=add]");
    if (select && select.value) send(select.closest("li.final"), { add: [select.value] }, sessionOf, failed);
  });
}

async function send(line, change, sessionOf, failed) {
  const session = sessionOf();
  if (!line || !session || line.dataset.correcting) return;
  line.dataset.correcting = "1"; // one request at a time per line: each answer is the line's whole state
  const controls = line.querySelectorAll(".as-line-intents button, .as-line-intents select");
  for (const control of controls) control.disabled = true;
  try {
    const answer = await api.correctIntents(session, {
      utterance_id: Number(line.dataset.utteranceId),
      speaker: line.dataset.speaker || undefined,
      add: change.add ?? [],
      remove: change.remove ?? [],
    });
    renderLineIntents(line, answer.labels.map((name) => ({ name })));
    line.dataset.corrected = "1";
  } catch (error) {
    for (const control of controls) control.disabled = false;
    const select = line.querySelector("select[data-action=add]");
    if (select) select.value = "";
    failed(`The correction was not saved: ${error.message ?? error}`);
  } finally {
    delete line.dataset.correcting;
  }
}

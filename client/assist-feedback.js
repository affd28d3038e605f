// One-click intent corrections on the assist overlay's transcript: each final line shows its
// intents as chips; clicking a chip removes that label, the "+" list adds one of the label
// set's others. Each click is one POST /api/sessions/{id}/corrections; the chips then show
// the labels the server answered with (never a guess of the page's own). What training
// learns from is stored by the server (server/feedback_api.py), and read back after a reconnect
// (GET .../corrections; assist-view.js applyCorrections) onto the lines with `showCorrected`.

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

/** A line's labels as the server has them after a correction (`names`): its chips, marked corrected. */
export function showCorrected(line, names) {
  renderLineIntents(line, names.map((name) => ({ name })));
  line.dataset.corrected = "1";
}

/** The call's stored corrections (GET .../corrections), or none when they cannot be read (the lines stay as they are). */
export async function readBack(session) {
  try {
    return (await api.getCorrections(session))?.corrections ?? [];
  } catch (error) {
    console.warn("Earshot assist: the corrections were not read back", error);
    return [];
  }
}

/** The labels a corrected line shows (names), or null when the line is not corrected. */
export function correctedNames(line) {
  return line?.dataset.corrected ? JSON.parse(line.dataset.labels ?? "[]") : null;
}

/**
 * Listens for clicks on the transcript's chips. `sessionOf()`: the call's {session_id, token};
 * `failed(message)`: shows a correction the server refused (the chips stay as they were);
 * `corrected(line, names)`: the line's labels now, for what else shows them (the "Customer wants" card).
 */
export function initFeedback(sessionOf, failed, corrected = () => {}) {
  const lines = byRole("lines");
  const hooks = { sessionOf, failed, corrected };
  lines.addEventListener("click", (event) => {
    const chip = event.target.closest("button[data-action=remove]");
    if (chip) send(chip.closest("li.final"), { remove: [chip.dataset.intent] }, hooks);
  });
  lines.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-action=add]");
    if (select && select.value) send(select.closest("li.final"), { add: [select.value] }, hooks);
  });
}

async function send(line, change, { sessionOf, failed, corrected }) {
  const session = sessionOf();
  if (!line || !session || line.dataset.correcting) return;
  line.dataset.correcting = "1"; // one request at a time per line: each answer is the line's whole state
  const controls = line.querySelectorAll(".as-line-intents button, .as-line-intents select");
  for (const control of controls) control.disabled = true;
  let labels = null;
  try {
    const answer = await api.correctIntents(session, {
      utterance_id: Number(line.dataset.utteranceId),
      speaker: line.dataset.speaker || undefined,
      add: change.add ?? [],
      remove: change.remove ?? [],
    });
    showCorrected(line, answer.labels);
    labels = answer.labels;
  } catch (error) {
    for (const control of controls) control.disabled = false;
    const select = line.querySelector("select[data-action=add]");
    if (select) select.value = "";
    failed(`The correction was not saved: ${error.message ?? error}`);
  } finally {
    delete line.dataset.correcting;
  }
  if (labels) corrected(line, labels);
}

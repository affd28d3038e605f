// The interview report page, served at /sessions/{id}/report.
//
// The token comes from the URL fragment (#token=...), which browsers never send
// to the server, or from sessionStorage where the interview page left it.
// Everything the candidate said is user content: it goes in with textContent,
// never as HTML.

import { byRole as $, capitalise, fetchSessionDocument, h, openSessionPage, svg } from "./page.js";

const SCORE_LABELS = { content: "Content", pace: "Pace", fluency: "Fluency", grammar: "Grammar" };
const PAUSE_KINDS = { within_final: "mid-sentence", between_finals: "between sentences" };
const ERROR_HINTS = {
  401: "The link's access token is missing or wrong. Open the report from the interview page's link.",
  403: "The link's access token is missing or wrong. Open the report from the interview page's link.",
  404: "There is no report for this session: it may have expired, or no question was asked.",
  503: "The server cannot build the report right now. Try again in a minute.",
  0: "Check your connection, then reload the page.",
};

// ---------------------------------------------------------------- loading

const fetchReport = (sessionId, token) =>
  fetchSessionDocument(sessionId, token, "report", (report) => Array.isArray(report.questions));

// ---------------------------------------------------------------- formatting

const fmtScore = (score) => (score === null || score === undefined ? "—" : Number(score).toFixed(0));

function fmtClock(seconds) {
  const s = Math.max(0, seconds);
  const minutes = Math.floor(s / 60);
  const rest = s - minutes * 60;
  return `${minutes}:${rest.toFixed(1).padStart(4, "0")}`;
}

function fmtDuration(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  return minutes ? `${minutes} min ${rest} s` : `${rest} s`;
}

// ---------------------------------------------------------------- sections

function renderHeader(report) {
  document.title = `Earshot — ${report.role_title} interview report`;
  $("subtitle").textContent = `— ${report.role_title}`;
  const date = new Date(report.started_at * 1000);
  const when = date.toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
  $("meta").textContent = `${capitalise(report.difficulty)} difficulty · ${when} · ${fmtDuration(report.duration_s)}`;

  const overall = report.scores.overall;
  $("overall-score").textContent = fmtScore(overall.score);
  $("overall-how").textContent = overall.how;

  const tiles = $("score-tiles");
  tiles.replaceChildren(
    ...Object.entries(SCORE_LABELS).map(([name, label]) => {
      const part = report.scores[name];
      const weight = overall.weights?.[name];
      return h(
        "li",
        { class: "score-tile", "data-score": name },
        h("p", { class: "tile-head" }, h("span", { class: "tile-label", text: label }),
          weight !== undefined ? h("span", { class: "tile-weight", text: `weight ${Math.round(weight * 100)}%` }) : null),
        h("p", { class: "tile-score" }, fmtScore(part.score), h("span", { class: "out-of", text: "/ 100" })),
        h("p", { class: "how", text: part.how }),
      );
    }),
  );
}

function renderQuestion(q, threshold) {
  const badges = [];
  if (q.skipped) badges.push(h("span", { class: "badge skipped", text: "Skipped" }));
  else if (!q.answered) badges.push(h("span", { class: "badge unanswered", text: "No answer" }));
  if (q.hints) badges.push(h("span", { class: "badge hint", text: q.hints === 1 ? "1 hint" : `${q.hints} hints` }));

  const coverage = q.skipped
    ? h("p", { class: "coverage muted", text: "Skipped: not scored for content." })
    : h("p", { class: "coverage" },
        h("strong", { text: `${q.key_points_covered} of ${q.key_points.length}` }),
        ` key points covered (${q.coverage ?? 0}%).`);

  const followUps = q.follow_ups.length
    ? h("div", { class: "follow-ups" }, h("h4", { text: "Follow-ups asked" }),
        h("ul", {}, q.follow_ups.map((text) => h("li", { text }))))
    : null;

  const transcript = q.transcript
    ? h("blockquote", { class: "transcript" }, q.transcript)
    : h("p", { class: "transcript empty", text: q.skipped ? "No answer: the question was skipped." : "No answer was heard." });

  const points = h(
    "ul",
    { class: "key-points", "aria-label": `Key points, covered when similarity is at least ${threshold}` },
    q.key_points.map((point) =>
      h(
        "li",
        { class: "keypoint", "data-testid": "keypoint", "data-covered": point.covered ? "true" : "false" },
        h("span", { class: "mark", "aria-hidden": "true", text: point.covered ? "✓" : "✗" }),
        h("div", { class: "keypoint-body" },
          h("p", { class: "keypoint-text" },
            h("span", { class: "visually-hidden", text: point.covered ? "Covered: " : "Not covered: " }),
            point.text),
          point.matched
            ? h("p", { class: "keypoint-match" },
                h("span", { class: "similarity", text: `similarity ${point.similarity.toFixed(2)}` }),
                " closest: ", h("q", { text: point.matched }))
            : h("p", { class: "keypoint-match muted", text: "Nothing said to compare." })),
      ),
    ),
  );

  const stats = [];
  if (q.words) stats.push(`${q.words} words in ${q.speaking_s} s`);
  const fillers = Object.values(q.fillers).reduce((a, b) => a + b, 0);
  if (q.answered) stats.push(`${fillers} filler${fillers === 1 ? "" : "s"}`);
  if (q.answered) stats.push(`${q.long_pauses} long pause${q.long_pauses === 1 ? "" : "s"}`);
  if (q.answered) stats.push(`${q.grammar_issues} grammar note${q.grammar_issues === 1 ? "" : "s"}`);

  return h(
    "article",
    { class: "question-card", "data-testid": "report-question", "data-skipped": q.skipped ? "true" : "false",
      "aria-labelledby": `q${q.index}-title` },
    h("header", { class: "question-head" },
      h("span", { class: "question-number", text: `Q${q.index}` }),
      h("h3", { id: `q${q.index}-title`, text: q.text }),
      badges.length ? h("div", { class: "badges" }, badges) : null),
    followUps,
    h("h4", { text: "Your answer" }),
    transcript,
    stats.length ? h("p", { class: "question-stats muted", text: stats.join(" · ") }) : null,
    h("h4", { text: "Key points" }),
    coverage,
    points,
  );
}

// ---------------------------------------------------------------- pace plot

function niceStep(span, targetTicks) {
  const raw = span / targetTicks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * power) return m * power;
  return 10 * power;
}

export function pacePlot(pace, questions) {
  const W = 720, H = 280;
  const M = { top: 16, right: 18, bottom: 46, left: 52 };
  const points = pace.points;
  const iw = W - M.left - M.right, ih = H - M.top - M.bottom;

  const tMax = Math.max(10, ...points.map((p) => p.end_s));
  const wpsMax = Math.max(pace.max_wps + 1, ...points.map((p) => p.wps), ...pace.rolling.map((p) => p.wps));
  const yMax = Math.ceil(wpsMax);
  const x = (t) => M.left + (t / tMax) * iw;
  const y = (v) => M.top + ih - (Math.min(v, yMax) / yMax) * ih;

  const inBand = points.filter((p) => p.in_band).length;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "pace-plot",
    "data-testid": "pace-plot",
    role: "img",
    "aria-label":
      `Pace over time: ${points.length} answers, ${inBand} within the good band of ${pace.min_wps} to ` +
      `${pace.max_wps} words per second; mean ${pace.mean_wps} words per second.`,
  });

  // The good band first, so everything else draws over it.
  root.append(svg("rect", {
    class: "band", x: M.left, y: y(pace.max_wps), width: iw, height: y(pace.min_wps) - y(pace.max_wps),
  }));
  root.append(svg("text", { class: "band-label", x: M.left + iw - 6, y: y(pace.max_wps) + 14, "text-anchor": "end" },
    `good pace ${pace.min_wps}–${pace.max_wps} words/s`));

  const yStep = niceStep(yMax, 5);
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    root.append(svg("line", { class: "grid", x1: M.left, x2: M.left + iw, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "tick", x: M.left - 8, y: y(v) + 4, "text-anchor": "end" }, String(+v.toFixed(1))));
  }
  const xStep = niceStep(tMax, 8);
  for (let t = 0; t <= tMax + 1e-9; t += xStep) {
    root.append(svg("line", { class: "tick-mark", x1: x(t), x2: x(t), y1: M.top + ih, y2: M.top + ih + 5 }));
    const label = t >= 60 ? `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}` : `${Math.round(t)}s`;
    root.append(svg("text", { class: "tick", x: x(t), y: M.top + ih + 18, "text-anchor": "middle" }, label));
  }
  root.append(svg("line", { class: "axis", x1: M.left, x2: M.left + iw, y1: M.top + ih, y2: M.top + ih }));
  root.append(svg("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: M.top + ih }));
  root.append(svg("text", { class: "axis-label", x: M.left + iw / 2, y: H - 6, "text-anchor": "middle" },
    "Time into the interview (minutes:seconds)"));
  root.append(svg("text", {
    class: "axis-label", x: 14, y: M.top + ih / 2, "text-anchor": "middle",
    transform: `rotate(-90 14 ${M.top + ih / 2})`,
  }, "Words per second"));

  // Where each question's answer starts.
  const firstByQuestion = new Map();
  for (const p of points) if (!firstByQuestion.has(p.question)) firstByQuestion.set(p.question, p.start_s);
  for (const q of questions) {
    const t = firstByQuestion.get(q.index);
    if (t === undefined) continue;
    root.append(svg("line", { class: "question-line", x1: x(t), x2: x(t), y1: M.top, y2: M.top + ih }));
    root.append(svg("text", { class: "question-label", x: x(t) + 3, y: M.top + 11 }, `Q${q.index}`));
  }

  if (pace.rolling.length > 1) {
    root.append(svg("polyline", {
      class: "rolling",
      points: pace.rolling.map((p) => `${x(p.t_s).toFixed(1)},${y(p.wps).toFixed(1)}`).join(" "),
    }));
  }
  for (const p of points) {
    const dot = svg("circle", {
      class: p.in_band ? "point in-band" : "point out-of-band", cx: x(p.t_s), cy: y(p.wps), r: 5,
    });
    dot.append(svg("title", {}, `Q${p.question} at ${fmtClock(p.t_s)}: ${p.wps} words/s (${p.words} words in ${p.voiced_s} s)`));
    root.append(dot);
  }
  return root;
}

function renderPace(report) {
  const pace = report.pace;
  const holder = $("pace-plot-holder");
  if (!pace.points.length) {
    holder.replaceChildren(h("p", { class: "muted", text: "No speech was recorded, so there is no pace to plot." }));
    $("pace-caption").textContent = "";
    return;
  }
  holder.replaceChildren(pacePlot(pace, report.questions));
  $("pace-caption").replaceChildren(
    h("span", { class: "legend-item" }, h("span", { class: "swatch dot in-band", "aria-hidden": "true" }), "one utterance, in the good band"),
    h("span", { class: "legend-item" }, h("span", { class: "swatch dot out-of-band", "aria-hidden": "true" }), "outside it"),
    h("span", { class: "legend-item" }, h("span", { class: "swatch line", "aria-hidden": "true" }),
      `rolling ${pace.window_s} s average`),
    h("span", { class: "legend-item" }, h("span", { class: "swatch band", "aria-hidden": "true" }),
      `good pace ${pace.min_wps}–${pace.max_wps} words/s`),
    h("span", { class: "caption-note", text:
      `${pace.words} words in ${pace.speaking_s} s of speech (mean ${pace.mean_wps} words/s); ` +
      `${pace.in_band_s} s of it in the good band. Long pauses are not counted as speaking time.` }),
  );
}

function renderFillers(report) {
  const fillers = report.fillers;
  const holder = $("fillers");
  const entries = Object.entries(fillers.counts);
  if (!report.pace.points.length) {
    holder.replaceChildren(h("p", { class: "muted", text: "Nothing was said, so there are no fillers to count." }));
    return;
  }
  if (!entries.length) {
    holder.replaceChildren(h("p", { class: "muted", text: "No filler words. Nicely done." }));
    return;
  }
  holder.replaceChildren(
    h("table", { class: "fillers-table" },
      h("caption", { text: `${fillers.total} in all, ${fillers.per_minute} per minute of speech` }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Filler" }), h("th", { scope: "col", class: "num", text: "Count" }))),
      h("tbody", {}, entries.map(([word, count]) =>
        h("tr", {}, h("th", { scope: "row" }, h("q", { text: word })), h("td", { class: "num", text: count }))))),
  );
}

function renderPauses(report) {
  const pauses = report.long_pauses;
  const holder = $("pauses");
  const intro = `Silences of ${pauses.threshold_s} s or more inside an answer.`;
  if (!pauses.items.length) {
    const none = report.pace.points.length ? "None: your answers flowed." : "Nothing was said.";
    holder.replaceChildren(h("p", { class: "muted", text: `${intro} ${none}` }));
    return;
  }
  holder.replaceChildren(
    h("p", { class: "muted", text: intro }),
    h("ol", { class: "pauses-list" }, pauses.items.map((p) =>
      h("li", { class: "pause" },
        h("strong", { text: `${p.duration_s.toFixed(1)} s` }),
        ` in Q${p.question} at ${fmtClock(p.at_s)} (${PAUSE_KINDS[p.kind] ?? p.kind}): after `,
        h("q", { text: p.after }), " and before ", h("q", { text: p.before })))),
  );
}

/** The original sentence with the corrected words marked. */
function markedOriginal(original, span) {
  const at = span ? original.indexOf(span) : -1;
  if (at < 0) return [original];
  return [original.slice(0, at), h("mark", { text: span }), original.slice(at + span.length)];
}

function renderGrammar(report) {
  const grammar = report.grammar;
  const holder = $("grammar");
  const summary = h("p", { class: "muted", text:
    `${grammar.issues} note${grammar.issues === 1 ? "" : "s"} in ${grammar.words} words ` +
    `(${grammar.per_100_words} per 100 words). Rules run on every answer; a language model may add more.` });
  if (!grammar.words) {
    holder.replaceChildren(h("p", { class: "muted", text: "Nothing was said, so there is no grammar to check." }));
    return;
  }
  if (!grammar.corrections.length) {
    holder.replaceChildren(summary, h("p", { text: "No grammar notes." }));
    return;
  }
  holder.replaceChildren(
    summary,
    h("ul", { class: "corrections" }, grammar.corrections.map((c) =>
      h("li", { class: "correction", "data-testid": "grammar-correction", "data-source": c.source },
        h("p", { class: "correction-line" },
          h("span", { class: "visually-hidden", text: "You said: " }),
          h("span", { class: "original" }, markedOriginal(c.original, c.span)),
          h("span", { class: "arrow", "aria-hidden": "true", text: " → " }),
          h("span", { class: "visually-hidden", text: " Better: " }),
          h("span", { class: "suggestion", text: c.suggestion })),
        h("p", { class: "correction-why" },
          c.reason, " ",
          h("span", { class: `badge source-${c.source}`, text: c.source === "llm" ? "language model" : "rule" }),
          c.question ? h("span", { class: "muted", text: ` · Q${c.question}` }) : null)))),
  );
}

export function renderReport(report) {
  renderHeader(report);
  const threshold = report.settings?.key_point_threshold ?? 0.5;
  $("questions").replaceChildren(...report.questions.map((q) => renderQuestion(q, threshold)));
  renderPace(report);
  renderFillers(report);
  renderPauses(report);
  renderGrammar(report);
  $("loading").hidden = true;
  $("report").hidden = false;
  document.body.dataset.state = "ready";
}

openSessionPage({
  page: "report",
  what: "report",
  noSession: "This address does not name an interview session.",
  errorHints: ERROR_HINTS,
  load: fetchReport,
  render: renderReport,
});

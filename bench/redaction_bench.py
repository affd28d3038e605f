"""PII redaction benchmark: precision and recall per kind on the labelled set, and the time per line.

    python -m bench.redaction_bench [--out bench/results] [--repeat 5]

1. quality - every line of tests/data/redaction/labelled.jsonl through
   `Redactor.find(text, all kinds)`. A found span and a labelled span match when
   they have the same kind and overlap by at least half of their union
   (intersection over union >= 0.5), one to one, best overlap first. Per kind,
   and per kind and form (spoken / written): precision = matched found spans /
   found spans, recall = matched labelled spans / labelled spans. `hidden` is the
   share of labelled spans whose every non-space character lies under some found
   span of any kind (what a reader of the redacted line cannot see). Clean lines
   must come out unchanged: `clean.changed_lines` counts those that did not.
   The same for the held-out part alone (`quality_held_out`).
2. whisper - personal data read aloud by Piper and transcribed by the live
   pipeline, then redacted: what is still readable (bench/redaction_asr.py;
   `--no-asr` skips it).
3. timing - `Redactor.redact(line, all kinds)` per line, one thread, over
   realistic finals: the corpus's reference transcripts (utterances, long answers
   split into sentences, the call's turns), the Whisper finals of pass 2 and the
   labelled lines, each `--repeat` times after a warm-up: p50 / p95 / max in ms
   (target: p95 <= 3 ms; exit status 1 when missed). Also the load time.

Writes bench/results/redaction.json and redaction.png. The results hold
labelled and spoken lines only where the redactor got them wrong, and the
Whisper pass's rows: made-up data, never a secret of the deployment.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from bench.common import DEFAULT_CORPUS, REPO_ROOT, RESULTS_DIR, load_corpus, machine_info, progress, utc_timestamp, write_results
from earshot.loadtest.stats import percentiles
from earshot.models.redaction import PiiSpan, Redactor
from earshot.models.redaction.kinds import KINDS

LABELLED = REPO_ROOT / "tests" / "data" / "redaction" / "labelled.jsonl"
MATCH_IOU = 0.5
TARGET_P95_MS = 3.0
FORMS = ("spoken", "written")


@dataclass(frozen=True)
class Labelled:
    text: str
    spans: tuple[PiiSpan, ...]
    form: str  # spoken | written | clean
    set: str  # tuning (written beside the recognisers) | held-out (written after, never tuned on)


def load_labelled(path: Path = LABELLED) -> list[Labelled]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        spans = tuple(PiiSpan(s["kind"], s["start"], s["end"]) for s in row["spans"])
        rows.append(Labelled(row["text"], spans, row["form"], row["set"]))
    return rows


def iou(a: PiiSpan, b: PiiSpan) -> float:
    inter = max(0, min(a.end, b.end) - max(a.start, b.start))
    return inter / (max(a.end, b.end) - min(a.start, b.start))


def matches(found: Iterable[PiiSpan], gold: Iterable[PiiSpan]) -> list[tuple[PiiSpan, PiiSpan]]:
    """One-to-one (found, gold) pairs of the same kind with IoU >= MATCH_IOU, best overlap first."""
    pairs = sorted(((iou(f, g), f, g) for f in found for g in gold if f.kind == g.kind), key=lambda p: -p[0])
    used_found, used_gold, matched = set(), set(), []
    for overlap, f, g in pairs:
        if overlap >= MATCH_IOU and f not in used_found and g not in used_gold:
            used_found.add(f)
            used_gold.add(g)
            matched.append((f, g))
    return matched


def hidden(text: str, gold: PiiSpan, found: Iterable[PiiSpan]) -> bool:
    covered = set()
    for span in found:
        covered.update(range(span.start, span.end))
    return all(i in covered for i in range(gold.start, gold.end) if not text[i].isspace())


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def score(redactor: Redactor, rows: list[Labelled]) -> dict[str, Any]:
    """Precision, recall and `hidden` per kind and per (kind, form); clean lines changed; the misses."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    clean_changed, errors = [], []
    everything = frozenset(KINDS)
    for row in rows:
        found = redactor.find(row.text, everything)
        if row.form == "clean":
            if found:
                clean_changed.append({"text": row.text, "found": [_show(row.text, s) for s in found]})
            continue
        matched = matches(found, row.spans)
        for form in (row.form, "all"):
            for kind in KINDS:
                c = counts.setdefault((kind, form), {"found": 0, "labelled": 0, "matched": 0, "hidden": 0})
                c["found"] += sum(s.kind == kind for s in found)
                c["labelled"] += sum(s.kind == kind for s in row.spans)
                c["matched"] += sum(g.kind == kind for _, g in matched)
                c["hidden"] += sum(g.kind == kind and hidden(row.text, g, found) for g in row.spans)
        if len(matched) != len(found) or len(matched) != len(row.spans):
            errors.append({"text": row.text, "form": row.form, "labelled": [_show(row.text, s) for s in row.spans],
                           "found": [_show(row.text, s) for s in found]})
    table = {}
    for kind in KINDS:
        table[kind] = {}
        for form in ("all", *FORMS):
            c = counts.get((kind, form), {"found": 0, "labelled": 0, "matched": 0, "hidden": 0})
            table[kind][form] = {**c, "precision": _ratio(c["matched"], c["found"]),
                                 "recall": _ratio(c["matched"], c["labelled"]), "hidden_share": _ratio(c["hidden"], c["labelled"])}
    return {
        "match_rule": f"same kind and intersection over union >= {MATCH_IOU}, one to one",
        "per_kind": table,
        "clean": {"lines": sum(r.form == "clean" for r in rows), "changed_lines": len(clean_changed), "changed": clean_changed},
        "errors": errors,
    }


def _show(text: str, span: PiiSpan) -> str:
    return f"{span.kind}: {text[span.start:span.end]}"


def corpus_finals(corpus: Path) -> list[str]:
    """The corpus's reference texts as finals: utterances, long answers split into sentences, the call's turns."""
    lines: list[str] = []
    if (corpus / "manifest.tsv").is_file():
        for item in load_corpus(corpus):
            if item.kind == "long":
                lines += [s for s in re.split(r"(?<=[.;?!])\s+", item.text) if s.strip()]
            elif item.text:
                lines.append(item.text)
        for call in sorted((corpus / "calls").glob("*.json")):
            lines += [turn["text"] for turn in json.loads(call.read_text())["turns"]]
    else:
        progress(f"{corpus} has no manifest.tsv: timing runs without the corpus's lines")
    return lines


def bench_timing(redactor: Redactor, lines: list[str], repeat: int) -> dict[str, Any]:
    everything = frozenset(KINDS)
    for line in lines:
        redactor.redact(line, everything)
    times = []
    for _ in range(repeat):
        for line in lines:
            started = time.perf_counter()
            redactor.redact(line, everything)
            times.append(time.perf_counter() - started)
    ms = percentiles(t * 1000 for t in times)
    return {"lines": len(lines), "repeat": repeat, "ms_per_line": ms, "target_p95_ms": TARGET_P95_MS,
            "pass": ms["p95"] is not None and ms["p95"] <= TARGET_P95_MS, "_samples_ms": [t * 1000 for t in times],
            "words_per_line": percentiles(len(line.split()) for line in lines)}


def corpus_findings(redactor: Redactor, corpus_lines: list[str]) -> list[dict[str, Any]]:
    """What the redactor takes out of the corpus's (non-labelled) reference texts: for reading, not scoring."""
    everything = frozenset(KINDS)
    return [{"text": line, "redacted": result.text} for line in corpus_lines
            if (result := redactor.redact(line, everything)).spans]


def plot(report: dict[str, Any], samples_ms: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    table = report["quality"]["per_kind"]
    x = np.arange(len(KINDS))
    for offset, form in ((-0.3, "spoken"), (-0.1, "written")):
        left.bar(x + offset, [table[k][form]["recall"] or 0 for k in KINDS], 0.2, label=f"recall, {form}")
    left.bar(x + 0.1, [table[k]["all"]["precision"] or 0 for k in KINDS], 0.2, label="precision")
    left.bar(x + 0.3, [table[k]["all"]["hidden_share"] or 0 for k in KINDS], 0.2, label="hidden (any tag)")
    left.set_xticks(x, KINDS, fontsize=8)
    left.set_ylim(0, 1.05)
    left.set_title(f"Labelled set: {report['quality']['clean']['changed_lines']} of "
                   f"{report['quality']['clean']['lines']} clean lines changed")
    left.legend(fontsize=7, loc="lower left")
    timing = report["timing"]["ms_per_line"]
    upper = max(TARGET_P95_MS * 1.5, timing["p99"] * 1.5)
    right.hist([min(v, upper) for v in samples_ms], bins=60, range=(0, upper), color="tab:blue")
    right.axvline(TARGET_P95_MS, color="red", linestyle="--", label=f"target p95 {TARGET_P95_MS} ms")
    right.axvline(timing["p95"], color="black", linestyle=":", label=f"p95 {timing['p95']:.2f} ms")
    right.set_xlabel(f"ms per line (redact, all kinds, one thread); max {timing['max']:.1f} ms, clipped")
    right.set_title(f"Time per final ({report['timing']['lines']} lines x {report['timing']['repeat']})")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-asr", action="store_true", help="skip the pass through Piper and Whisper (bench/redaction_asr.py)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    redactor = Redactor.load()
    load_s = time.perf_counter() - started
    progress(f"redactor loaded in {load_s:.1f} s")
    rows = load_labelled()
    report: dict[str, Any] = {
        "when": utc_timestamp(),
        "machine": machine_info(),
        "load_s": round(load_s, 2),
        "labelled": {"path": str(LABELLED.relative_to(REPO_ROOT)), "lines": len(rows)},
        "quality": score(redactor, rows),
        "quality_held_out": score(redactor, [row for row in rows if row.set == "held-out"]),
    }
    corpus_lines = corpus_finals(args.corpus)
    whisper_finals: list[str] = []
    if not args.no_asr:
        from bench.redaction_asr import bench_whisper  # Piper and Whisper: only when this pass runs

        progress("speaking, transcribing and redacting the spoken cases (about 30 s)")
        report["whisper"] = bench_whisper(redactor)
        whisper_finals = report["whisper"].pop("_finals")
    finals = corpus_lines + whisper_finals + [row.text for row in rows]
    report["timing"] = bench_timing(redactor, finals, args.repeat)
    report["timing"]["sources"] = {"corpus_references": len(corpus_lines), "whisper_finals": len(whisper_finals),
                                   "labelled": len(rows)}
    report["corpus_findings"] = corpus_findings(redactor, corpus_lines)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(report, report["timing"].pop("_samples_ms"), args.out / "redaction.png")
    write_results(args.out, "redaction", report)
    for kind, row in report["quality"]["per_kind"].items():
        held = report["quality_held_out"]["per_kind"][kind]["all"]
        progress(f"{kind:8} precision {row['all']['precision']}  recall {row['all']['recall']} "
                 f"(spoken {row['spoken']['recall']}, written {row['written']['recall']}; held-out {held['recall']})  "
                 f"hidden {row['all']['hidden_share']}")
    timing = report["timing"]["ms_per_line"]
    progress(f"clean lines changed: {report['quality']['clean']['changed_lines']} of {report['quality']['clean']['lines']}; "
             f"ms per line p50 {timing['p50']} p95 {timing['p95']} max {timing['max']}")
    if "whisper" in report:
        w = report["whisper"]
        progress(f"whisper ({w['asr_model']}): {w['leaked_cases']} of {w['pii_cases']} cases leaked "
                 f"({w['unheard_cases']} without a final), "
                 f"{w['kind_found']} tagged with their kind, {w['clean_changed']} of {w['clean_cases']} clean cases changed")
    return 0 if report["timing"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: paths, the speech corpus, the machine it ran on, progress lines, results files.

Results files are JSON in `bench/results/` (git-ignored). They never hold a
secret: a bench that records its settings records `Settings.public()`, where
the LLM's API key is masked.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# The corpus sits beside the checkout, as it does for the tests; EARSHOT_CORPUS overrides.
DEFAULT_CORPUS = Path(os.environ.get("EARSHOT_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))
PACKAGES = ("faster-whisper", "ctranslate2", "numpy", "webrtcvad-wheels", "av")


# --- corpus --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusFile:
    rel: str  # path relative to the corpus root, as in manifest.tsv
    path: Path
    kind: str  # its top folder: utterances | long | nonspeech | ...
    seconds: float  # measured from the WAV, not the manifest's rounded value
    text: str  # reference transcript ("" for nonspeech)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def load_corpus(root: Path) -> list[CorpusFile]:
    """Every file of `manifest.tsv`, and the `nonspeech/` files it does not list (they need no text)."""
    with open(root / "manifest.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    files = []
    for row in rows:
        kind = row["path"].split("/", 1)[0]
        path = root / row["path"]
        files.append(CorpusFile(row["path"], path, kind, wav_seconds(path), row["text"] if kind != "nonspeech" else ""))
    listed = {f.rel for f in files}
    for path in sorted((root / "nonspeech").glob("*.wav")):
        rel = path.relative_to(root).as_posix()
        if rel not in listed:
            files.append(CorpusFile(rel, path, "nonspeech", wav_seconds(path), ""))
    return files


# --- the machine ------------------------------------------------------------------------------
def package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "git": git_state(),
    }


# --- output ------------------------------------------------------------------------------------
def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_results(out: Path, stem: str, report: dict[str, Any]) -> Path:
    """`out/stem.json`, indented; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path

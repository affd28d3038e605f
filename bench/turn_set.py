"""The end-of-turn set: interview answers with pauses inside them, and where each pause and each answer ends.

An end-of-turn decider (silence timers, the Smart Turn model) must wait out a
pause inside an answer and answer quickly after the answer's real end. This
module builds WAVs to measure that: each answer is real corpus speech cut or
joined with pauses put in (or a Piper voice for "um" and for spoken lists),
followed by at least 3 s of silence. The set itself is data:
`tests/data/turns/manifest.json` (written once by bench/turn_set_author.py)
holds every cut in samples, every pause length and every reference text;
`tests/data/turns/README.md` says what the kinds are and where the audio comes
from. Building needs no model except the Piper voice for its Piper pieces.

Ground truth is measured from the built audio, by energy (`speech_bounds`:
10 ms frames, RMS >= 300), not by a VAD: `MidPause.start_s` is where voice
stops before a pause and `end_s` where it starts again; `TurnItem.voice_end_s`
is where the whole answer's voice ends. A pause's length, voice to voice, is
the manifest's `pause_s`: the silence put in is that minus the quiet the
recording already has at the cut. Everything sits on the 10 ms frame grid of
its source, so the built file's energy frames are the source's frames.

Put-in silence is not digital zero but low Gaussian noise (RMS 30 int16 units,
like a quiet room; a seed per item), which also lies under the Piper pieces.
Building is deterministic: the same manifest and corpus give the same bytes.

    python -m bench.turn_set              # builds into bench/results/turn-set/ and lists the items
"""

from __future__ import annotations

import json
import sys
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from bench.common import DEFAULT_CORPUS, REPO_ROOT, RESULTS_DIR
from earshot.loadtest.caller import speech_bounds
from earshot.models.audio import SAMPLE_RATE, read_audio

if TYPE_CHECKING:
    from bench.turn_set_piper import PiperSentences

MANIFEST = REPO_ROOT / "tests" / "data" / "turns" / "manifest.json"
DEFAULT_OUT = RESULTS_DIR / "turn-set"
FRAME = SAMPLE_RATE // 100  # speech_bounds' 10 ms frame: every cut and every piece is a whole number of them
MIN_PAUSE_S = 0.75  # every pause in the set is longer: shorter ones are the recordings' own
KINDS = ("mid_clause", "hesitation", "list", "complete")
PAUSE_KINDS = ("mid_clause", "hesitation", "list")
SOURCE_NAMES = ("corpus-cut", "corpus-joined", "piper")
PIPER_LEVEL = 4500.0  # 90th percentile of a Piper piece's frame RMS when the answer has no corpus speech (LJ Speech: 4400-5800)
_TOLERANCE_S = 0.015  # built pauses must match the manifest this closely (the frame grid makes them exact to 10 ms)


@dataclass(frozen=True)
class MidPause:
    """A pause inside the answer: the interviewer must NOT take the turn here."""

    start_s: float  # end of voice before the pause, in the built file (by audio energy)
    end_s: float  # start of voice after it
    kind: str  # "mid_clause" | "hesitation" | "list"

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class TurnItem:
    id: str
    kind: str  # "mid_clause" | "hesitation" | "list" | "complete"
    path: Path  # the built 16 kHz mono int16 WAV
    text: str  # reference transcript of the whole answer
    voice_start_s: float
    voice_end_s: float  # end of voice of the whole (complete) answer, by audio energy
    pauses: tuple[MidPause, ...]
    trailing_silence_s: float  # silence after the answer in the file (>= 3 s)
    source: str  # "corpus-joined" | "corpus-cut" | "piper": how it was made
    sources: tuple[str, ...]  # corpus files used (paths relative to the corpus)


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_turn_set(out_dir: Path, corpus: Path = DEFAULT_CORPUS, manifest: Optional[dict[str, Any]] = None) -> list[TurnItem]:
    """Write every item of the manifest as `out_dir/<id>.wav` and return the items, measured from the written audio."""
    manifest = manifest if manifest is not None else load_manifest()
    out_dir.mkdir(parents=True, exist_ok=True)
    voice = None
    if any("piper" in s for item in manifest["items"] for s in item["segments"]):
        from bench.turn_set_piper import PiperSentences  # loads the Piper voice, ~1 s

        voice = PiperSentences()
    return [_build_item(entry, manifest, out_dir, corpus, voice) for entry in manifest["items"]]


# --- one item -----------------------------------------------------------------------------------


def _build_item(entry: dict, manifest: dict, out_dir: Path, corpus: Path, voice: Optional["PiperSentences"]) -> TurnItem:
    rng = np.random.default_rng(zlib.crc32(entry["id"].encode()))
    noise_rms = manifest["noise_rms"]
    corpus_audio = [corpus_piece(corpus, s) if "corpus" in s else None for s in entry["segments"]]
    spoken = [a for a in corpus_audio if a is not None]
    level = _level(np.concatenate(spoken)) if spoken else PIPER_LEVEL
    pieces = [
        audio if audio is not None else _piper_piece(voice, segment, level, rng, noise_rms)
        for audio, segment in zip(corpus_audio, entry["segments"])
    ]

    parts = [_noise(rng, _frames(manifest["lead_s"]), noise_rms)]
    pause_offsets = []  # sample offset of each put-in silence in the built file
    for i, piece in enumerate(pieces):
        if i:
            spec = entry["pauses"][i - 1]
            natural = quiet_edges(pieces[i - 1])[1] + quiet_edges(piece)[0]
            inserted = _frames(spec["pause_s"] - natural)
            if inserted < _frames(0.1):
                raise ValueError(f"{entry['id']}: the audio already pauses {natural:.2f} s before piece {i}")
            if spec["inserted_s"] is not None and abs(inserted / SAMPLE_RATE - spec["inserted_s"]) > _TOLERANCE_S:
                raise ValueError(f"{entry['id']}: piece {i} needs {inserted / SAMPLE_RATE:.3f} s of silence, the manifest says "
                                 f"{spec['inserted_s']}: has the corpus changed?")
            pause_offsets.append(sum(len(p) for p in parts))
            parts.append(_noise(rng, inserted, noise_rms))
        parts.append(piece)
    parts.append(_noise(rng, _frames(manifest["trailing_s"]), noise_rms))
    pcm = np.concatenate(parts).astype(np.int16)

    path = out_dir / f"{entry['id']}.wav"
    write_wav(path, pcm)
    return _measure(entry, path, pcm, pause_offsets)


def _measure(entry: dict, path: Path, pcm: np.ndarray, pause_offsets: list[int]) -> TurnItem:
    voice_start, voice_end = speech_bounds(pcm.tobytes())
    pauses = []
    for offset, spec in zip(pause_offsets, entry["pauses"]):
        start = speech_bounds(pcm[:offset].tobytes())[1]
        end = offset / SAMPLE_RATE + speech_bounds(pcm[offset:].tobytes())[0]
        if abs((end - start) - spec["pause_s"]) > _TOLERANCE_S:
            raise ValueError(f"{entry['id']}: built a {end - start:.3f} s pause for the manifest's {spec['pause_s']} s")
        pauses.append(MidPause(round(start, 3), round(end, 3), spec["kind"]))
    return TurnItem(
        id=entry["id"],
        kind=entry["kind"],
        path=path,
        text=entry["text"],
        voice_start_s=round(voice_start, 3),
        voice_end_s=round(voice_end, 3),
        pauses=tuple(pauses),
        trailing_silence_s=round(len(pcm) / SAMPLE_RATE - voice_end, 3),
        source=entry["source"],
        sources=tuple(entry["sources"]),
    )


# --- audio pieces ------------------------------------------------------------------------------------


def corpus_piece(corpus: Path, segment: dict) -> np.ndarray:
    pcm = np.frombuffer(read_audio(corpus / segment["corpus"]), dtype=np.int16)
    if segment["end"] > len(pcm):
        raise ValueError(f"{segment['corpus']} has {len(pcm)} samples, the manifest cuts at {segment['end']}")
    piece = pcm[segment["start"]: segment["end"]].astype(np.float64) * segment["gain"]
    return np.clip(np.round(piece), -32768, 32767).astype(np.int16)


def _piper_piece(voice: "PiperSentences", segment: dict, level: float, rng: np.random.Generator, noise_rms: float) -> np.ndarray:
    """A piece of a Piper sentence, the whole sentence brought to `level`, over room noise."""
    piece = voice.piece(segment["piper"], segment["from_pause"], segment["to_pause"]).astype(np.float64)
    piece *= level / _level(voice.sentence(segment["piper"]))
    piece += rng.normal(0.0, noise_rms, len(piece))
    return np.clip(np.round(piece), -32768, 32767).astype(np.int16)


def quiet_edges(piece: np.ndarray) -> tuple[float, float]:
    """Seconds of quiet at the start and at the end of a piece, by speech_bounds."""
    first, last = speech_bounds(piece.tobytes())
    return first, len(piece) / SAMPLE_RATE - last


def _level(pcm: np.ndarray) -> float:
    """90th percentile of 10 ms frame RMS: how loud the voice is, pauses aside."""
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return float(np.percentile(np.sqrt(np.mean(frames * frames, axis=1)), 90))


def _frames(seconds: float) -> int:
    """Samples in `seconds`, rounded to whole 10 ms frames."""
    return int(round(seconds * 100)) * FRAME


def _noise(rng: np.random.Generator, samples: int, rms: float) -> np.ndarray:
    return np.round(rng.normal(0.0, rms, samples)).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    items = build_turn_set(out)
    for item in items:
        pauses = " ".join(f"{p.kind[:4]}:{p.start_s:.2f}+{p.length_s:.2f}" for p in item.pauses)
        print(f"{item.id:26s} {item.kind:10s} {item.source:13s} voice {item.voice_start_s:5.2f}-{item.voice_end_s:5.2f} "
              f"tail {item.trailing_silence_s:.2f}  {pauses}")
    print(f"{len(items)} items in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

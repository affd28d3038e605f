"""What each load-test caller says: corpus clips with reference text, laid out on its audio clock.

A caller's audio is a sequence of clips separated by silence, long enough to
fill the run's duration. Every clip knows where its speech starts and ends on
the caller's clock, which is what latencies are measured from, and its
reference text, which is what the transcript is scored against.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from earshot.loadtest.caller import speech_bounds
from earshot.models.audio import BYTES_PER_SAMPLE, SAMPLE_RATE, read_audio

BYTES_PER_S = SAMPLE_RATE * BYTES_PER_SAMPLE
# What a folder of clips is searched for; a single file of any other name is tried too (FFmpeg decides).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")


class ScriptError(ValueError):
    """The audio given to the load test cannot be used; the message says why."""


@dataclass(frozen=True)
class Clip:
    path: Path
    pcm16: bytes
    reference: Optional[str]  # None: no transcript known, so no WER for this clip
    speech_start_s: float  # voice within the clip
    speech_end_s: float

    @property
    def seconds(self) -> float:
        return len(self.pcm16) / BYTES_PER_S


@dataclass(frozen=True)
class PlacedClip:
    clip: Clip
    start_s: float  # where the clip starts on the caller's audio clock

    @property
    def speech_start_s(self) -> float:
        return self.start_s + self.clip.speech_start_s

    @property
    def speech_end_s(self) -> float:
        return self.start_s + self.clip.speech_end_s


def load_clips(source: Path) -> list[Clip]:
    """An audio file or a folder of them, in any format FFmpeg reads (a folder: the files named
    AUDIO_SUFFIXES); references come from a `manifest.tsv` (path, text) beside or above them, or
    from `NAME.txt` next to `NAME.flac` (or .wav, ...)."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    elif source.is_file():
        paths = [source]
    else:
        raise ScriptError(f"{source}: no such file or folder")
    if not paths:
        raise ScriptError(f"{source}: no audio files in it ({' '.join(AUDIO_SUFFIXES)})")
    references = _manifest_references(paths[0].parent)
    clips = []
    for path in paths:
        pcm = read_audio(path)  # raises AudioFormatError naming the file
        start, end = speech_bounds(pcm)
        if end <= start:
            raise ScriptError(f"{path}: no speech found in it (too quiet?)")
        sidecar = path.with_suffix(".txt")
        reference = sidecar.read_text().strip() if sidecar.is_file() else references.get(path.resolve())
        clips.append(Clip(path, pcm, reference, start, end))
    return clips


def _manifest_references(folder: Path) -> dict[Path, str]:
    """Texts of a corpus manifest (tab-separated `path` and `text` columns, paths relative to it)."""
    for root in (folder, folder.parent):
        manifest = root / "manifest.tsv"
        if manifest.is_file():
            with open(manifest, newline="") as f:
                return {(root / row["path"]).resolve(): row["text"] for row in csv.DictReader(f, delimiter="\t")}
    return {}


def interview_answers(clips: list[Clip]) -> list[Clip]:
    """The clips a candidate could give as a whole answer: those whose transcript ends a sentence.

    Half of the corpus's LJ Speech clips stop mid-sentence ("...represented in
    the Exhibition", "...fine typography,"). The end-of-turn model rightly hears
    those as unfinished and holds the turn to the fallback silence (2.5 s), so
    as answers they would measure the fallback, not the reply. Clips with no
    transcript are kept; if no clip qualifies, all are used.
    """
    finished = [c for c in clips if c.reference is None or c.reference.rstrip().rstrip("\"')").endswith((".", "?", "!"))]
    return finished or clips


def lay_out(clips: list[Clip], duration_s: float, gap_s: float, seed: int) -> list[PlacedClip]:
    """Clips in a shuffled order (each caller its own, so callers do not speak in lockstep),
    repeated as needed, until the next one would end past `duration_s`; at least one clip."""
    rng = random.Random(seed)
    placed: list[PlacedClip] = []
    clock = gap_s * rng.random()  # callers start speaking at different moments too
    while True:
        order = clips[:]
        rng.shuffle(order)
        for clip in order:
            if placed and clock + clip.seconds > duration_s:
                return placed
            placed.append(PlacedClip(clip, round(clock, 3)))
            clock += clip.seconds + gap_s


def render(placed: list[PlacedClip]) -> bytes:
    """The caller's whole microphone signal: the clips at their places, silence between."""
    if not placed:
        return b""
    end = placed[-1].start_s + placed[-1].clip.seconds
    audio = bytearray((int(end * SAMPLE_RATE) + 1) * BYTES_PER_SAMPLE)
    for item in placed:
        offset = int(round(item.start_s * SAMPLE_RATE)) * BYTES_PER_SAMPLE
        audio[offset : offset + len(item.clip.pcm16)] = item.clip.pcm16
    return bytes(audio)

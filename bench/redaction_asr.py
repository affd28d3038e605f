"""The redactor on what Whisper really writes: personal data read aloud, transcribed by the live pipeline.

Each case is a sentence a caller might say, with its personal data read out
the way people read it ("four one one one, one one one one, ..."). The project's
own voice (Piper) speaks every case into one recording, 1.2 s of silence
between them; `transcribe_file` runs the streaming pipeline over it as a caller
would be heard (VAD, streaming Whisper, the asr_model setting); each final goes
through `Redactor.redact` with every kind.

Whisper writes what it hears its own way ("for 111 111 111 111", "mark.revera
at gmail.com", "My count number 77341922"), so there are no labelled spans to
score against. Instead a case *leaks* when one of its secrets can still be read
in its redacted finals: the finals are normalised (spoken.py), lowercased and
stripped to letters and digits, and a secret leaks when it appears whole (up to
8 characters) or when any 6 characters of it in a row do (longer ones). A clean
case must come out unchanged. A final belongs to the case whose audio it overlaps.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from earshot.models.asr import AsrEngine
from earshot.models.redaction import Redactor
from earshot.models.redaction.kinds import KINDS
from earshot.models.redaction.spoken import normalise
from earshot.models.tts import PiperTts
from earshot.server import protocol
from earshot.server.configs import asr_config
from earshot.server.settings_sources import settings_from_env
from earshot.server.transcribe_command import transcribe_file

GAP_S = 1.2
WINDOW = 6


@dataclass(frozen=True)
class SpokenCase:
    said: str
    kind: Optional[str]  # None: a clean sentence, nothing may be redacted
    secrets: tuple[str, ...] = ()  # lowercase letters and digits that must not be readable afterwards


CASES: tuple[SpokenCase, ...] = (
    SpokenCase("My card number is four one one one, one one one one, one one one one, one one one one.", "card", ("4111111111111111",)),
    SpokenCase("It's a Visa, four two four two, four two four two, four two four two, four two four two.", "card", ("4242424242424242",)),
    SpokenCase("The long number on the card is five five five five, five five five five, five five five five, four four four four.",
               "card", ("5555555555554444",)),
    SpokenCase("You can reach me on four one five, five five five, zero one three two.", "phone", ("4155550132",)),
    SpokenCase("My mobile is oh seven nine one one, one two three four five six.", "phone", ("07911123456",)),
    SpokenCase("Call me back at two one two, five five five, zero one eight seven.", "phone", ("2125550187",)),
    SpokenCase("My email is mark dot rivera at gmail dot com.", "email", ("rivera",)),
    SpokenCase("It's dana underscore whitfield at yahoo dot com.", "email", ("whitfield",)),
    SpokenCase("Send it to priya dot raman at outlook dot com.", "email", ("raman",)),
    SpokenCase("My social security number is five three six, two two, eight one four seven.", "id", ("536228147",)),
    SpokenCase("My social is four two one, six seven, three three zero eight.", "id", ("421673308",)),
    SpokenCase("My national insurance number is A B, one two, three four, five six, C.", "id", ("123456",)),
    SpokenCase("My IBAN is G B eight two, W E S T, one two three four, five six nine eight, seven six five four, three two.",
               "iban", ("12345698765432",)),
    SpokenCase("The IBAN is D E eight nine, three seven zero four, zero zero four four, zero five three two, zero one three zero, zero zero.",
               "iban", ("370400440532013000",)),
    SpokenCase("My account number is seven seven three four one nine two two.", "account", ("77341922",)),
    SpokenCase("The order number is five five two zero eight one.", "account", ("552081",)),
    SpokenCase("My customer number is four four seven one nine three.", "account", ("447193",)),
    SpokenCase("My date of birth is the third of May, nineteen eighty four.", "dob", ("3rdofmay1984", "may1984")),
    SpokenCase("I was born on July fourth, nineteen seventy six.", "dob", ("july4th1976", "1976")),
    SpokenCase("Date of birth, twelfth of January, nineteen ninety.", "dob", ("12thofjanuary1990", "january1990")),
    SpokenCase("I live at forty two Elm Road, apartment five.", "address", ("42elmroad", "elmroad")),
    SpokenCase("Please send it to seventeen Oak Lane.", "address", ("17oaklane", "oaklane")),
    SpokenCase("My address is two twenty one Baker Street, London.", "address", ("221baker", "bakerstreet")),
    SpokenCase("My name is Mark Rivera.", "name", ("rivera",)),
    SpokenCase("Hi, this is Sarah Johnson calling about my bill.", "name", ("sarah", "johnson")),
    SpokenCase("I spoke with Jennifer yesterday and she said it was fixed.", "name", ("jennifer",)),
    SpokenCase("That's forty nine dollars ninety nine a month.", None),
    SpokenCase("We cut churn by eight percent over two quarters.", None),
    SpokenCase("The model has four layers.", None),
    SpokenCase("In twenty twenty two we shipped the new version.", None),
    SpokenCase("I've done it two or three times.", None),
    SpokenCase("The meeting is at three thirty on Tuesday.", None),
)


def canonical(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", normalise(text).text.lower())


def leaked(secrets: tuple[str, ...], redacted: str) -> list[str]:
    seen = canonical(redacted)
    out = []
    for secret in secrets:
        pieces = [secret] if len(secret) <= 8 else [secret[i:i + WINDOW] for i in range(len(secret) - WINDOW + 1)]
        if any(piece in seen for piece in pieces):
            out.append(secret)
    return out


async def _speak(cases: tuple[SpokenCase, ...], path: Path) -> list[tuple[float, float]]:
    """One recording of every case; returns each case's (start, end) in seconds."""
    tts = PiperTts.load()
    try:
        pcm, spans, at, rate = [], [], 0.0, 16000
        for case in cases:
            audio = await tts.synthesize(case.said)
            rate = audio.sample_rate
            spans.append((at, at + audio.duration_s))
            pcm += [audio.pcm, np.zeros(int(rate * GAP_S), dtype=np.int16)]
            at += audio.duration_s + GAP_S
    finally:
        tts.close()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.concatenate(pcm).tobytes())
    return spans


def _owner(spans: list[tuple[float, float]], start: float, end: float) -> int:
    overlaps = [min(end, e) - max(start, s) for s, e in spans]
    return int(np.argmax(overlaps))


def bench_whisper(redactor: Redactor, cases: tuple[SpokenCase, ...] = CASES) -> dict[str, Any]:
    """Speak, transcribe and redact every case; the per-case rows and the totals."""
    settings = settings_from_env()
    finals: list[protocol.Final] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.wav"
        spans = asyncio.run(_speak(cases, path))
        engine = AsrEngine.load(asr_config(settings))
        try:
            asyncio.run(transcribe_file(path, engine, settings, lambda e: finals.append(e) if isinstance(e, protocol.Final) else None))
        finally:
            engine.close()
    heard: dict[int, list[str]] = {}
    for final in finals:
        heard.setdefault(_owner(spans, final.start, final.end), []).append(final.text)
    everything = frozenset(KINDS)
    rows = []
    for index, case in enumerate(cases):
        texts = heard.get(index, [])
        results = [redactor.redact(text, everything) for text in texts]
        redacted = " ".join(r.text for r in results)
        rows.append({
            "said": case.said, "kind": case.kind, "whisper": " ".join(texts), "redacted": redacted,
            "found_kinds": sorted({s.kind for r in results for s in r.spans}),
            "heard": bool(texts),
            "leaked": leaked(case.secrets, redacted) if case.kind else [],
            "changed": case.kind is None and any(r.spans for r in results),
        })
    pii = [r for r in rows if r["kind"]]
    return {
        "asr_model": settings.asr_model,
        "cases": len(rows),
        "pii_cases": len(pii),
        "unheard_cases": sum(not r["heard"] for r in pii),  # no final overlaps them (Whisper dropped or merged them)
        "leaked_cases": sum(bool(r["leaked"]) for r in pii),
        "kind_found": sum(r["kind"] in r["found_kinds"] for r in pii),
        "clean_cases": len(rows) - len(pii),
        "clean_changed": sum(r["changed"] for r in rows),
        "rows": rows,
        "_finals": [f.text for f in finals],
    }

"""Redaction on real calls: personal data said into a WebRTC call is a tag in what is stored and read back.

The speech is Piper's (the corpus has no one reading out a phone number or an
email address): Whisper tiny.en hears "four one five, five five five, zero one
three four" as "415-555-0134" and "mark dot rivera at gmail dot com" as
"mark.revera at gmail.com" (seen here), the written and the half-spoken forms
the redactor must catch.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import start_server

from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import SAMPLE_RATE, resample
from earshot.models.tts import PiperTts
from tests.calls import call_with_pcm, finish_call, stored_finals

pytestmark = pytest.mark.slow

SAID = "You can reach me at four one five, five five five, zero one three four. Thank you so much."
DIGITS = re.compile(r"\d{3}")


@pytest.fixture(scope="module")
def spoken_phone() -> bytes:
    tts = PiperTts.load()
    try:
        audio = asyncio.run(tts.synthesize(SAID))
    finally:
        tts.close()
    silence = bytes(SAMPLE_RATE)  # 0.5 s before the voice
    return silence + resample(audio.pcm, audio.sample_rate, SAMPLE_RATE).tobytes()


@pytest.fixture(scope="module")
def raw_overlay_server(redis_url, tmp_path_factory):
    srv = start_server(redis_url, tmp_path_factory.mktemp("raw-overlay"), extra_args=("--assist-overlay-raw",))
    yield srv
    srv.stop()


def heard(finals: list[dict]) -> str:
    return " ".join(final["text"] for final in finals)


def words_in(record) -> list[str]:
    """Every string a record holds, less its random session id (hex, which may spell "415")."""
    if isinstance(record, dict):
        return [s for key, value in record.items() if key != "session_id" for s in words_in(value)]
    if isinstance(record, list):
        return [s for value in record for s in words_in(value)]
    return [record] if isinstance(record, str) else []


def test_an_interview_stores_and_shows_tags_not_the_number(server, spoken_phone):
    async def scenario():
        caller = await call_with_pcm(HeadlessCaller(server.base_url, spoken_phone, mode="transcribe"))
        try:
            live = caller.of_type("final")
            stored = await stored_finals(caller, len(live))
            await caller.hangup(end_session=True)
        finally:
            await caller.close_api()
        return live, stored

    live, stored = asyncio.run(scenario())
    assert live, "no final came back"
    assert "[PHONE]" in heard(live), heard(live)
    assert not DIGITS.search(heard(live)), heard(live)
    assert all("raw_text" not in final for final in live)  # only an assist overlay may see what was said
    assert [f["text"] for f in stored] == [f["text"] for f in live]
    assert all("raw_text" not in final for final in stored)
    tag_words = [w for final in stored for w in final["words"] if w["word"] == "[PHONE]"]
    assert len(tag_words) == 1 and tag_words[0]["end"] > tag_words[0]["start"]
    assert not any(DIGITS.search(w["word"]) for final in stored for w in final["words"])


def test_the_assist_overlay_may_show_what_was_said_but_the_store_keeps_tags(raw_overlay_server, spoken_phone):
    async def scenario():
        silence = bytes(len(spoken_phone))
        caller = HeadlessCaller(
            raw_overlay_server.base_url, silence, mode="assist", speakers={"agent": silence, "customer": spoken_phone}
        )
        try:
            await caller.connect()
            await finish_call(caller)
            live = caller.of_type("final")
            stored = await stored_finals(caller, len(live))
            await caller.hangup(end_session=True, keep_api=True)
            summary = await caller.api("GET", "/summary")
        finally:
            await caller.close_api()
        return live, stored, summary

    live, stored, summary = asyncio.run(scenario())
    customer = [final for final in live if final["speaker"] == "customer"]
    assert customer, "no final from the customer"
    assert "[PHONE]" in heard(customer)
    raw = " ".join(final.get("raw_text", "") for final in customer)
    assert DIGITS.search(raw), f"the overlay should see the number: {raw!r}"
    assert all("raw_text" not in final for final in stored)
    assert not DIGITS.search(heard(stored))
    said_in_summary = " ".join(words_in(summary))
    assert "415" not in said_in_summary and "0134" not in said_in_summary, said_in_summary

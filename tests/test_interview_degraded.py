"""The interviewer when its parts fail: bad bank, missing models, an LLM that is down, no voice, no answer."""

from __future__ import annotations

import json
import shutil
from typing import Iterator

import pytest
from conftest import ServerProcess, corpus_file, free_port, serve_expecting_failure, start_server

from earshot.agents.question_bank import DEFAULT_DIR
from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio

pytestmark = pytest.mark.slow


def test_an_invalid_question_bank_stops_the_start_naming_file_and_field(redis_url, tmp_path):
    bank = tmp_path / "questions"
    shutil.copytree(DEFAULT_DIR, bank)
    data = json.loads((bank / "data_scientist.json").read_text())
    data["questions"][2]["key_points"] = ["only one"]
    (bank / "data_scientist.json").write_text(json.dumps(data))
    result = serve_expecting_failure(redis_url, tmp_path, "--question-dir", str(bank))
    assert result.returncode == 2, result.stderr
    assert "data_scientist.json: questions[2].key_points" in result.stderr


def test_a_missing_llm_model_stops_the_start_with_its_path(redis_url, tmp_path):
    missing = tmp_path / "nowhere" / "mistral.gguf"
    result = serve_expecting_failure(redis_url, tmp_path, "--llm-model", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr


def test_a_missing_voice_stops_the_start_with_its_path(redis_url, tmp_path):
    missing = tmp_path / "voice.onnx"
    result = serve_expecting_failure(redis_url, tmp_path, "--tts-voice", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr


@pytest.fixture(scope="module")
def degraded_server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    """An LLM URL where nothing listens, and no voice: the interview must still run, in text."""
    srv = start_server(
        redis_url,
        tmp_path_factory.mktemp("degraded"),
        extra_args=(
            "--llm-backend", "http", "--llm-url", f"http://127.0.0.1:{free_port()}/v1",
            "--no-tts-enabled", "--interview-questions", "2", "--answer-timeout-s", "4",
            "--turn-pause-ms", "500",
        ),
    )
    yield srv
    srv.stop()


def listening_count(caller: HeadlessCaller) -> int:
    return sum(1 for e in caller.of_type("turn") if e["state"] == "listening")


async def wait_listening(caller: HeadlessCaller, count: int, what: str, timeout: float = 60) -> None:
    ok = await caller.wait_until(
        lambda c: listening_count(c) >= count and c.of_type("turn")[-1]["state"] == "listening", timeout
    )
    assert ok, f"timed out waiting for {what}: {[e['state'] for e in caller.of_type('turn')]}"


async def test_llm_down_and_voice_off_the_interview_goes_on_in_text(degraded_server):
    caller = HeadlessCaller(degraded_server.base_url, b"", role="software_engineer", difficulty="easy")
    await caller.connect()
    try:
        await wait_listening(caller, 1, "the first question")
        assert caller.of_type("agent"), "no words from the interviewer"
        assert caller.of_type("agent_audio_start") == []  # voice off: text only
        first = caller.of_type("question")[0]

        # Mains hum and clicks are no answer: after the answer timeout the question is asked once more.
        caller.say(read_audio(corpus_file("nonspeech/hum-and-clicks-8s.wav")))
        await wait_listening(caller, 2, "the question asked again")
        again = [e for e in caller.of_type("agent") if e["kind"] == "repeat"]
        assert again and "take your time" in "".join(e["text_delta"] for e in again).lower()
        assert caller.of_type("final") == []

        # A real answer: the LLM is unreachable, so the follow-up is the bank's, with an error event.
        caller.say(read_audio(corpus_file("utterances/LJ001-0009.wav")))
        await wait_listening(caller, 3, "the follow-up")
        follow_up = caller.of_type("question")[-1]
        assert (follow_up["index"], follow_up["follow_up"]) == (1, True)
        from earshot.agents.question_bank import load_question_bank

        assert follow_up["text"] in load_question_bank().get(first["question_id"]).follow_ups
        codes = [e["code"] for e in caller.of_type("error")]
        assert "llm_unavailable" in codes, codes
    finally:
        await caller.hangup()

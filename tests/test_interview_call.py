"""A whole mock interview over real WebRTC: Whisper hears, SmolLM2 asks, Piper speaks.

A headless aiortc caller plays the candidate with corpus recordings, waits for
the interviewer the way a person would (until it has finished asking), and
listens to the audio that comes back frame by frame. Nothing is faked: the
server is `python -m earshot.server serve` with its bundled models and a real Redis.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import httpx
import pytest
from conftest import ServerProcess, corpus_file, reference_text, start_server

from earshot.agents.question_bank import load_question_bank
from earshot.loadtest.caller import HeadlessCaller, speech_bounds
from earshot.models.audio import SAMPLE_RATE, read_audio, resample
from earshot.models.text import normalize_text
from earshot.models.tts import PiperTts
from tests.test_metrics import moved, scrape

pytestmark = [pytest.mark.slow, pytest.mark.timed]

ROLE, DIFFICULTY = "software_engineer", "easy"
FIRST_ANSWER = "utterances/LJ001-0009.wav"  # 19 words: enough to be followed up
SECOND_ANSWER = "utterances/LJ001-0005.wav"
BARGE_IN = "utterances/LJ001-0011.wav"


@pytest.fixture(scope="module")
def interview_server(redis_url, tmp_path_factory) -> Iterator[ServerProcess]:
    srv = start_server(
        redis_url,
        tmp_path_factory.mktemp("interview"),
        extra_args=("--interview-questions", "2", "--turn-pause-ms", "600", "--max-follow-ups", "1"),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def spoken_skip() -> bytes:
    """"Can I skip this one?" in a voice: Piper at 48 kHz, brought to the 16 kHz a microphone track carries."""
    tts = PiperTts.load()
    try:
        audio = asyncio.run(tts.synthesize("Can I skip this one?"))
    finally:
        tts.close()
    return resample(audio.pcm, audio.sample_rate, SAMPLE_RATE).tobytes()


def listening_count(caller: HeadlessCaller) -> int:
    return sum(1 for e in caller.of_type("turn") if e["state"] == "listening")


async def until(caller: HeadlessCaller, condition, timeout: float, what: str) -> None:
    if not await caller.wait_until(condition, timeout):
        turns = [e["state"] for e in caller.of_type("turn")]
        agent = "".join(e["text_delta"] for e in caller.of_type("agent"))
        pytest.fail(f"timed out waiting for {what}; turns={turns}; agent said: {agent!r}; errors={caller.of_type('error')}")


async def next_listening(caller: HeadlessCaller, after: int, what: str, timeout: float = 60) -> None:
    """Wait until the interviewer has finished speaking and listens for the `after+1`-th time."""
    await until(
        caller,
        lambda c: listening_count(c) > after and c.of_type("turn")[-1]["state"] == "listening",
        timeout,
        what,
    )


def words(text: str) -> set[str]:
    return set(normalize_text(text).split())


async def test_scripted_interview_follow_up_skip_barge_in_and_report(interview_server, spoken_skip):
    bank_ids = {q.id for q in load_question_bank().questions(ROLE, DIFFICULTY)}
    before = scrape(interview_server.base_url)
    caller = HeadlessCaller(interview_server.base_url, b"", role=ROLE, difficulty=DIFFICULTY)
    await caller.connect()
    try:
        # 1. The greeting is heard (audible frames), then the first question, then it listens.
        await next_listening(caller, 0, "the first question")
        greeting = [e for e in caller.of_type("agent") if e["kind"] == "greeting"]
        assert greeting and greeting[-1]["final"] and not greeting[-1]["interrupted"]
        assert "welcome" in "".join(e["text_delta"] for e in greeting).lower()
        starts = {e["utterance_id"]: e for e in caller.of_type("agent_audio_start")}
        assert greeting[0]["utterance_id"] in starts, "no audio for the greeting"
        assert len(caller.audible_frames()) >= 100, "less than 2 s of audible interviewer audio"
        first = caller.of_type("question")[0]
        assert (first["index"], first["total"], first["follow_up"]) == (1, 2, False)
        assert first["question_id"] in bank_ids

        # 2. A real answer gets a follow-up that is about question 1.
        caller.say(read_audio(corpus_file(FIRST_ANSWER)))
        await next_listening(caller, 1, "the follow-up to answer 1")
        follow_up = caller.of_type("question")[-1]
        assert (follow_up["index"], follow_up["follow_up"]) == (1, True)
        assert follow_up["text"].endswith("?")

        # 3. A spoken "can I skip this one?" moves on to question 2 ...
        caller.say(spoken_skip)
        await until(caller, lambda c: c.of_type("question")[-1]["index"] == 2, 60, "question 2 after the skip")
        second = caller.of_type("question")[-1]
        assert not second["follow_up"]
        assert second["question_id"] in bank_ids and second["question_id"] != first["question_id"]

        # 4. ... and the candidate starts answering while it is still being asked (barge-in).
        seen = len(caller.of_type("agent_audio_start"))
        await until(caller, lambda c: len(c.of_type("agent_audio_start")) > seen, 30, "question 2 to be spoken")
        asked_id = caller.of_type("agent_audio_start")[-1]["utterance_id"]
        await asyncio.sleep(1.5)  # into "Sure, let's skip that one. Question 2 of 2. ..."
        barge_pcm = read_audio(corpus_file(BARGE_IN))
        start_s, _ = caller.say(barge_pcm)
        onset_s, _ = speech_bounds(barge_pcm)
        await until(
            caller,
            lambda c: any(e["utterance_id"] == asked_id and e["final"] for e in c.of_type("agent")),
            30,
            "the interrupted question to end",
        )
        cut = [e for e in caller.of_type("agent") if e["utterance_id"] == asked_id and e["final"]][0]
        assert cut["interrupted"], "talking over the interviewer did not interrupt it"
        assert [e for e in caller.of_type("agent_audio_end") if e["utterance_id"] == asked_id][0]["interrupted"]
        barge_wall = caller.track.wall_at(start_s + onset_s)
        # The interviewer was audibly talking when the candidate began...
        assert caller.audible_frames(barge_wall - 0.2), "the interviewer was silent at the barge-in: nothing to stop"
        assert [f for f in caller.audible_frames(barge_wall - 0.2) if f.wall < barge_wall]
        # ... and went quiet within 300 ms (until its next utterance, the reply to this answer).
        later = [e.wall for e in caller.events if e.event["type"] == "agent_audio_start" and e.wall > barge_wall]
        window_end = later[0] if later else barge_wall + 5.0
        heard_after = [f.wall - barge_wall for f in caller.audible_frames(barge_wall) if f.wall < window_end]
        stop_s = max(heard_after, default=0.0)
        print(f"barge-in: interviewer audio stopped {stop_s * 1000:.0f} ms after the candidate's voice began")
        assert stop_s <= 0.3, f"interviewer still audible {stop_s:.3f} s after the candidate began to speak"

        # What cut it off is the answer to question 2: a follow-up comes, which is answered too.
        await until(
            caller,
            lambda c: (c.of_type("question")[-1]["index"], c.of_type("question")[-1]["follow_up"]) == (2, True),
            60,
            "the follow-up to question 2",
        )
        await next_listening(caller, listening_count(caller), "the end of the follow-up to question 2")
        caller.say(read_audio(corpus_file(SECOND_ANSWER)))

        # 5. Two questions were planned: after this answer the interview closes and reports.
        await until(caller, lambda c: c.of_type("report_ready"), 90, "the report")
        turns = [e["state"] for e in caller.of_type("turn")]
        assert turns[-2:] == ["closing", "ended"]

        async with httpx.AsyncClient(base_url=interview_server.base_url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {caller.token}"}
            response = await http.get(f"/api/sessions/{caller.session_id}/report", headers=auth)
            assert response.status_code == 200, response.text
            report = response.json()
            page = await http.get(caller.of_type("report_ready")[0]["url"])
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    finally:
        await caller.hangup()
    what_the_candidate_felt(caller, before, scrape(interview_server.base_url))

    questions = report["questions"]
    assert [q["question_id"] for q in questions] == [first["question_id"], second["question_id"]]
    q1, q2 = questions
    assert q1["follow_ups"] == [follow_up["text"]] and not q1["skipped"]
    assert len(q2["follow_ups"]) == 1
    # Every answer is in the report, in the candidate's words as Whisper heard them.
    for question, clips in ((q1, [FIRST_ANSWER]), (q2, [BARGE_IN, SECOND_ANSWER])):
        heard = words(question["transcript"])
        for clip in clips:
            expected = words(reference_text(clip))
            assert len(heard & expected) >= 0.7 * len(expected), (clip, question["transcript"])
    assert all(len(q["key_points"]) >= 3 for q in questions)
    assert 0 <= report["scores"]["overall"]["score"] <= 100


def what_the_candidate_felt(caller: HeadlessCaller, before: dict[str, float], after: dict[str, float]) -> None:
    """/metrics moved with this interview: reply latency, LLM first token, TTS first audio, barge-in stop, intents."""
    cut = [e for e in caller.of_type("agent_audio_end") if e["interrupted"]]
    assert len(cut) == 1, caller.of_type("agent_audio_end")
    # The barge-in: the candidate's voice start -> the interviewer's first silent frame, once.
    assert moved(before, after, "earshot_barge_in_stop_seconds_count") == 1
    assert 0.05 <= moved(before, after, "earshot_barge_in_stop_seconds_sum") <= 0.5  # the VAD alone needs 60 ms of voice
    # Replies: each answer -> what the interviewer said next.
    replies = moved(before, after, "earshot_reply_latency_seconds_count")
    assert replies >= 2
    assert 0.2 * replies < moved(before, after, "earshot_reply_latency_seconds_sum") < 5.0 * replies
    assert moved(before, after, "earshot_llm_first_token_seconds_count") >= 1  # the follow-ups
    first_audio = sum(moved(before, after, f"earshot_tts_first_audio_seconds_count{{cached={c}}}") for c in ("true", "false"))
    assert first_audio >= 4  # greeting, questions, follow-ups, closing
    assert moved(before, after, "earshot_tts_first_audio_seconds_count{cached=true}") >= 1  # "Hello, and welcome." is warmed
    finals = len(caller.of_type("final"))
    assert finals >= 2 and moved(before, after, "earshot_intent_inference_seconds_count{kind=final}") == finals

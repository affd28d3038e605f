"""A resumed assist call starts from its stored summary (agents/assist_resume.py), so the summary covers the whole call.

The agent tests use the real bundled MiniLM (tests/assist_fixtures.py); the last test places a real two-track
call over WebRTC, drops its connection, resumes it on a new one and ends it.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from earshot.agents.assist_resume import EarlierPart, ResumeError
from earshot.loadtest.caller import ApiCallError, HeadlessCaller
from tests.assist_fixtures import embed, encoder, knowledge, topics  # noqa: F401 (fixtures)
from tests.test_assist import make_agent, say
from tests.test_assist_call import call_channels

# One support call, both sides, on one audio clock: an interruption (customer at 9.0 into the agent's 8.0-10.5),
# a long silence (14.0 -> 18.5), sentiment going down then up, intents on the customer's lines.
CALL = [
    ("agent", "thank you for calling how can i help you today", 0.2, 2.4, [("greeting_other", 0.9)]),
    ("customer", "my internet has been down since yesterday and the router keeps dropping", 3.0, 7.0,
     [("technical_problem", 0.9)]),
    ("agent", "i am sorry to hear that let me look at your line", 8.0, 10.5, []),
    ("customer", "this is ridiculous i have called three times already", 9.0, 12.0, [("complaint", 0.8)]),
    ("agent", "i understand let me restart the router from here", 12.5, 14.0, []),
    ("customer", "ok it is working again thank you so much", 18.5, 21.0, [("feedback_praise", 0.7)]),
    ("agent", "you are welcome is there anything else", 21.5, 23.0, [("greeting_other", 0.6)]),
    ("customer", "no that is all have a nice day", 23.5, 25.0, [("greeting_other", 0.8)]),
]
CUT = 4  # the connection drops after the first four lines


async def play(agent, lines, first_seq: int) -> None:
    for seq, (speaker, text, start, end, intents) in enumerate(lines, start=first_seq):
        say(agent, speaker, seq, seq, text, start, end, intents)  # utterance ids: any increasing number per side
        await agent.idle()  # each suggestion and topic judgement done before the next line, as in a real call


def comparable(summary: dict) -> dict:
    """The summary without what depends on timing: a suggestion's latency, and which entry it found (its
    knowledge search runs beside the topic's judgement of the same final, and a topic named first narrows it)."""
    summary = json.loads(json.dumps(summary))
    summary["suggestions"] = [
        {key: s[key] for key in ("utterance_id", "source", "final", "withheld")} for s in summary["suggestions"]
    ]
    return summary


async def test_a_resumed_agent_summarises_the_call_as_if_it_had_never_dropped(embed, knowledge, topics):
    whole, _ = make_agent(embed, knowledge, topics)
    await play(whole, CALL, 1)
    expected = comparable(whole.summary(26.0))
    await whole.close()

    before, _ = make_agent(embed, knowledge, topics)
    await play(before, CALL[:CUT], 1)
    # What the dropped connection stored (the mode adds when it started), as Redis holds it.
    stored = json.loads(json.dumps({"started_at": 1.0, **before.summary(12.2)}))
    await before.close()
    after, overlay = make_agent(embed, knowledge, topics)
    after.resume_from(EarlierPart.from_summary(stored))
    assert overlay.updates == [], "the overlay still shows the earlier part: nothing is sent again"
    await play(after, CALL[CUT:], CUT + 1)
    resumed_summary = after.summary(26.0)
    resumed = comparable(resumed_summary)
    await after.close()

    assert len(resumed["transcript"]) == len(CALL)
    assert resumed["metrics"]["interruptions"] == {"agent": 0, "customer": 1}  # made before the drop
    assert resumed["metrics"]["long_silences"] == 1  # spans the drop's side of the clock
    assert [s["label"] for s in resumed["sentiment"]["scores"]][:2] == ["negative", "negative"]
    earlier = len(stored["suggestions"])
    assert earlier and json.loads(json.dumps(resumed_summary["suggestions"][:earlier])) == stored["suggestions"]
    assert resumed == expected


async def test_the_old_summary_shape_without_spans_resumes_from_the_lines(embed, knowledge, topics):
    before, _ = make_agent(embed, knowledge, topics)
    await play(before, CALL[:CUT], 1)
    stored = json.loads(json.dumps({"started_at": 1.0, **before.summary(12.2)}))
    await before.close()
    del stored["speech_spans"]  # stored by a server from before they were
    after, _ = make_agent(embed, knowledge, topics)
    after.resume_from(EarlierPart.from_summary(stored))
    summary = after.summary(12.2)
    assert summary["metrics"] == stored["metrics"]  # every span here carried a final
    assert summary["speech_spans"] == {"agent": [[0.2, 2.4], [8.0, 10.5]], "customer": [[3.0, 7.0], [9.0, 12.0]]}
    await after.close()


@pytest.mark.parametrize("broken, problem", [
    ({}, "KeyError"),
    ({"transcript": [{"seq": "one", "speaker": "agent", "utterance_id": 1, "text": "hi", "start": 0, "end": 1}]},
     "ValueError: invalid literal"),
    ({"transcript": [{"seq": 1, "speaker": "robot", "utterance_id": 1, "text": "hi", "start": 0, "end": 1}],
      "started_at": 1.0, "sentiment": {"scores": []}}, "unknown speaker 'robot'"),
    ({"transcript": [], "started_at": 1.0, "sentiment": {"scores": []}, "topic": {"topic": "x"}}, "TypeError"),
])
def test_a_summary_that_is_not_a_call_s_is_refused_with_the_reason(broken, problem):
    with pytest.raises(ResumeError, match=problem):
        EarlierPart.from_summary(broken)


@pytest.mark.slow
async def test_a_call_resumed_on_a_new_connection_stores_one_summary_of_the_whole_call(server):
    """First connection: the call's first turn each side, then the link drops (no DELETE). The second connection
    resumes the session with the next turns and ends it: the stored summary has both parts, as one call."""
    speakers, _ = call_channels()
    part_s = 11.5  # the first turn of each side (call-1.json: agent 0.3-5.3, customer 6.0-11.0)
    first = {name: pcm[: int(part_s * 16000) * 2] for name, pcm in speakers.items()}
    second = {name: pcm[int(part_s * 16000) * 2: int(21.5 * 16000) * 2] for name, pcm in speakers.items()}
    caller = HeadlessCaller(server.base_url, first["agent"], mode="assist", speakers=first)
    await caller.connect()
    assert await caller.wait_until(lambda c: {f["speaker"] for f in c.of_type("final")} == {"agent", "customer"}, 40)
    # The customer's suggestion comes after the final (its knowledge search is an encoder pass of its own, which
    # may wait behind another final's intent pass): the link drops once it is shown, so the first part's summary holds it.
    assert await caller.wait_until(lambda c: c.of_type("suggestion"), 10)
    before = caller.of_type("final")
    await caller.hangup(end_session=False, keep_api=True)  # the link drops: the server closes the call, stores its summary
    stored = await stored_summary(caller)
    assert [line["text"] for line in stored["transcript"]] == [f["text"] for f in before]
    await caller.close_api()

    again = HeadlessCaller(server.base_url, second["agent"], mode="assist", speakers=second,
                           session_id=caller.session_id, token=caller.token)
    await again.connect()
    try:
        assert await again.wait_until(lambda c: c.of_type("ready"), 10)
        assert again.of_type("ready")[0]["resumed_finals"] == len(before)
        assert await again.wait_until(lambda c: {f["speaker"] for f in c.of_type("final")} == {"agent", "customer"}, 40)
        after = again.of_type("final")
    finally:
        await again.hangup(keep_api=True)  # DELETE: the call ends and stores its summary
    summary = await stored_summary(again)
    await again.close_api()

    texts = [line["text"] for line in summary["transcript"]]
    assert texts == [f["text"] for f in sorted([*before, *after], key=lambda f: f["seq"])]
    assert [line["seq"] for line in summary["transcript"]] == list(range(1, len(texts) + 1))
    assert summary["started_at"] == stored["started_at"], "the call started with its first connection"
    metrics = summary["metrics"]
    assert metrics["call_s"] >= max(f["end"] for f in after) > part_s
    assert metrics["talk_s"]["agent"] > stored["metrics"]["talk_s"]["agent"] > 0
    assert metrics["talk_s"]["customer"] > stored["metrics"]["talk_s"]["customer"] > 0
    customer = [f for f in sorted([*before, *after], key=lambda f: f["seq"]) if f["speaker"] == "customer"]
    assert [s["seq"] for s in summary["sentiment"]["scores"]] == [f["seq"] for f in customer]
    assert summary["suggestions"][0]["utterance_id"] == customer[0]["utterance_id"]


async def stored_summary(caller: HeadlessCaller) -> dict:
    """The call's summary once its connection has closed and stored it."""
    deadline = time.monotonic() + 20
    while True:
        try:
            stored = await caller.api("GET", "/summary")
            if not (await caller.session_state())["live"]:
                return stored
        except ApiCallError as exc:
            if exc.code != "no_summary":
                raise
        assert time.monotonic() < deadline, "no summary of the closed call was stored"
        await asyncio.sleep(0.2)

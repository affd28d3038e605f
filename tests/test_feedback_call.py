"""The intent feedback loop on a real server and a real assist call (calls/call-1.wav, two tracks, ~24 s).

While the call runs: the agent corrects the first final's intents through the API; then the
intent heads are replaced three times without a restart, each checked on the finals that
follow it: by the admin call (every label on), by SIGHUP to the server process (no label on),
and by a failed admin call (a broken head file: a JSON 409, and the heads in use stay). The
call never stops getting finals. After it: a correction from the stored summary, what
`load_corrections` reads, and a purge that takes the corrections with it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from earshot.loadtest.caller import ApiCallError, HeadlessCaller
from earshot.models.intent import HEADS_DIR, LABEL_SETS
from earshot.server.feedback_store import CORRECTIONS, load_corrections
from earshot.server.settings import Settings
from earshot.server.store_keys import session_key
from tests.calls import utterances_settled
from tests.conftest import start_server
from tests.test_assist_call import TAIL_S, call_channels

pytestmark = pytest.mark.slow

CALL_CENTER = json.loads((HEADS_DIR.parent / "intent_data" / "labels.json").read_text())["call_center"]


def write_heads(heads_dir: Path, threshold: float | None) -> None:
    """The bundled heads, with every call_center threshold set to `threshold` (None: as trained), and no
    label turned on when none reaches its threshold (so a threshold above 1 leaves every final unlabelled)."""
    for label_set in LABEL_SETS:
        head = json.loads((HEADS_DIR / f"{label_set}.json").read_text())
        if label_set == "call_center" and threshold is not None:
            head["thresholds"] = [threshold] * len(head["labels"])
            head["decide"] = "thresholds"
        (heads_dir / f"{label_set}.json").write_text(json.dumps(head))


@pytest.fixture(scope="module")
def heads_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heads")
    write_heads(path, None)
    return path


@pytest.fixture(scope="module")
def feedback_server(redis_url, tmp_path_factory, heads_dir):
    data_dir = tmp_path_factory.mktemp("feedback-server")
    srv = start_server(redis_url, data_dir, extra_args=("--intent-heads-dir", str(heads_dir)))
    srv.data_dir = data_dir  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def final_intents(caller: HeadlessCaller) -> list[dict]:
    return [e for e in caller.of_type("intent") if e["final"]]


async def correct(caller: HeadlessCaller, body: dict) -> dict:
    return await caller.api("POST", "/corrections", body)


async def refused(caller: HeadlessCaller, body: dict) -> ApiCallError:
    with pytest.raises(ApiCallError) as caught:
        await correct(caller, body)
    return caught.value


async def next_final_intent(caller: HeadlessCaller, after: int) -> dict:
    assert await caller.wait_until(lambda c: len(final_intents(c)) > after, timeout=15), "the call stopped getting finals"
    return final_intents(caller)[after]


async def wait_for_log(server, text: str, count: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count}x:\n{server.log()[-3000:]}"
        await asyncio.sleep(0.1)


async def test_corrections_and_head_reloads_during_a_live_assist_call(feedback_server, heads_dir):
    server = feedback_server
    speakers, _ = call_channels()
    duration = len(speakers["agent"]) / 2 / 16000
    caller = HeadlessCaller(server.base_url, speakers["agent"], mode="assist", speakers=speakers)
    admin = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    try:
        await caller.connect()
        first = await next_final_intent(caller, 0)

        # --- corrections of a live call's final -----------------------------------------------
        head = [label["name"] for label in first["labels"]]
        target = {"utterance_id": first["utterance_id"], "speaker": first["speaker"]}
        label = head[0] if head else "complaint"
        change = {"remove": [label]} if head else {"add": [label]}
        expected = sorted(set(head) - {label}) if head else [label]
        answer = await correct(caller, {**target, **change})
        assert answer["labels"] == expected and answer["head_labels"] == head, answer
        assert (answer["removed"], answer["added"]) == (([label], []) if head else ([], [label]))
        again = await correct(caller, {**target, **change})
        assert {**again, "at": 0} == {**answer, "at": 0}, "a repeated click changes nothing"
        undo = {"add": [label]} if head else {"remove": [label]}
        undone = await correct(caller, {**target, **undo})
        assert undone["labels"] == sorted(head) and undone["added"] == undone["removed"] == []
        # Read back: the one corrected utterance, its labels now (the head's again) and what the head said.
        read = await caller.api("GET", "/corrections")
        assert read["session_id"] == caller.session_id and read["label_set"] == "call_center"
        assert [(c["speaker"], c["utterance_id"], c["labels"], c["added"], c["removed"], c["head_labels"], c["agent"])
                for c in read["corrections"]] == [(first["speaker"], first["utterance_id"], sorted(head), [], [], sorted(head), "")]

        unknown = await refused(caller, {**target, "add": ["refund_request"]})
        assert unknown.status == 400 and unknown.code == "unknown_label"
        assert unknown.body["error"]["labels"] == list(CALL_CENTER) and unknown.body["error"]["label_set"] == "call_center"
        missing = await refused(caller, {"utterance_id": 999, "speaker": "customer", "add": ["complaint"]})
        assert missing.status == 404 and missing.code == "unknown_utterance"
        for body, code in (({"speaker": "agent", "add": ["complaint"]}, "bad_utterance_id"),
                           ({**target, "add": "complaint"}, "bad_labels"), ({**target}, "empty_correction"),
                           ({**target, "add": ["complaint"], "remove": ["complaint"]}, "conflicting_labels")):
            bad = await refused(caller, body)
            assert (bad.status, bad.code) == (400, code), body
        other = await admin.post("/api/sessions/0123456789abcdef/corrections", json={**target, "add": ["complaint"]},
                                 headers={"Authorization": f"Bearer {caller.token}"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "unknown_session"
        unread = await admin.get("/api/sessions/0123456789abcdef/corrections", headers={"Authorization": f"Bearer {caller.token}"})
        assert unread.status_code == 404 and unread.json()["error"]["code"] == "unknown_session"
        tokenless = await admin.get(f"/api/sessions/{caller.session_id}/corrections")
        assert tokenless.status_code == 401 and tokenless.json()["error"]["code"] == "missing_token"

        # --- the admin call: every label on from the next final ---------------------------------
        write_heads(heads_dir, 1e-6)  # thresholds must be positive; any sigmoid reaches this
        reloaded = await admin.post("/api/admin/intent-heads/reload")
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["label_sets"]["call_center"] == list(CALL_CENTER) and reloaded.json()["reloads"] == 1
        seen = len(final_intents(caller))
        after_admin = await next_final_intent(caller, seen)
        assert {label["name"] for label in after_admin["labels"]} == set(CALL_CENTER), after_admin

        # --- SIGHUP: no label on from the next final --------------------------------------------
        write_heads(heads_dir, 2.0)
        server.process.send_signal(signal.SIGHUP)
        await wait_for_log(server, "intent heads reloaded", 2)
        seen = len(final_intents(caller))
        after_hangup = await next_final_intent(caller, seen)
        assert after_hangup["labels"] == [], after_hangup

        # --- a broken head file: a JSON 409, the heads in use stay --------------------------------
        (heads_dir / "call_center.json").write_text('{"labels": ["complaint"], "weight": ')
        failed = await admin.post("/api/admin/intent-heads/reload")
        assert failed.status_code == 409 and failed.json()["error"]["code"] == "intent_heads_invalid", failed.text
        assert "call_center.json" in failed.json()["error"]["message"]
        assert "Traceback" not in server.log() and "intent heads not reloaded" in server.log()
        seen = len(final_intents(caller))
        after_failure = await next_final_intent(caller, seen)
        assert after_failure["labels"] == [], "the heads loaded by SIGHUP are still in use"

        await caller.wait_until(lambda c: c.track.audio_clock_s >= duration + TAIL_S, timeout=duration + 30)
        await caller.wait_until(utterances_settled, timeout=30)
        finals = caller.of_type("final")
        assert sorted(f["seq"] for f in finals) == list(range(1, len(finals) + 1)) and len(finals) >= 5
        assert not [e for e in caller.of_type("error")], caller.of_type("error")
        await caller.hangup(end_session=True, keep_api=True)  # the DELETE returns once the summary is stored

        # --- after the call: a correction from the stored summary ---------------------------------
        late = [f for f in finals if f["speaker"] == "customer"][-1]  # classified with no label on
        stored = await correct(caller, {"utterance_id": late["utterance_id"], "speaker": "customer", "add": ["escalation"]})
        assert "escalation" in stored["labels"] and stored["added"] == ["escalation"]
        # The summary shows both corrections, as the read-back gives them; its transcript keeps the head's labels.
        summary = await caller.api("GET", "/summary")
        assert summary["corrections"] == (await caller.api("GET", "/corrections"))["corrections"]
        by_line = {(c["speaker"], c["utterance_id"]): c for c in summary["corrections"]}
        assert set(by_line) == {(first["speaker"], first["utterance_id"]), ("customer", late["utterance_id"])}
        assert by_line[("customer", late["utterance_id"])]["labels"] == stored["labels"]
        assert by_line[("customer", late["utterance_id"])]["added"] == ["escalation"]
        late_line = next(line for line in summary["transcript"]
                         if line["speaker"] == "customer" and line["utterance_id"] == late["utterance_id"])
        assert "escalation" not in [intent["name"] for intent in late_line["intents"]]

        settings = Settings(redis_url=server_redis(server), data_dir=server.data_dir)
        mine = {(c.utterance_id, c.text): c for c in await asyncio.to_thread(load_corrections, settings)
                if c.session_id == caller.session_id}
        by_utterance = {f["utterance_id"]: f["text"] for f in finals if f["speaker"] == "customer"}
        assert (late["utterance_id"], by_utterance[late["utterance_id"]]) in mine
        first_text = next(f["text"] for f in finals if f["speaker"] == first["speaker"] and f["utterance_id"] == first["utterance_id"])
        confirmed = mine[(first["utterance_id"], first_text)]
        assert confirmed.labels == tuple(sorted(head)) and confirmed.agent == "" and confirmed.label_set == "call_center"

        # --- a purge takes the corrections with it ------------------------------------------------
        await caller.api("DELETE", "?purge=true")
        raw = aioredis.Redis.from_url(server_redis(server), decode_responses=True)
        assert await raw.exists(session_key(caller.session_id, CORRECTIONS)) == 0
        await raw.aclose()
        assert not [c for c in await asyncio.to_thread(load_corrections, settings) if c.session_id == caller.session_id]
    finally:
        await caller.hangup(keep_api=False)
        await admin.aclose()
        write_heads(heads_dir, None)


def server_redis(server) -> str:
    """The Redis URL the server was started with."""
    args = server.process.args
    return args[args.index("--redis-url") + 1]

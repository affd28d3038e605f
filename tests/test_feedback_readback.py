"""GET /api/sessions/{id}/corrections and the summary's `corrections`, on the shared server (auth none), quickly:
a call's stored summary stands in for the call (the live path is tests/test_feedback_call.py), and the
correction goes in through the POST as the overlay sends it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from earshot.server.at_rest import Sealer
from earshot.server.retention import Retention
from earshot.server.settings import Settings
from earshot.server.store import SessionStore, connect
from tests.test_feedback_call import server_redis

LINE = {"type": "final", "seq": 1, "speaker": "customer", "utterance_id": 3, "text": "I was charged twice",
        "start": 6.0, "end": 8.0, "intents": [{"name": "billing_inquiry", "score": 0.91}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()["error"]["code"]


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def ended_call(server, http: httpx.Client) -> dict:
    """An assist session whose call ended with one customer line (its summary stored as the server stores it)."""
    session = http.post("/api/sessions", json={"mode": "assist"}).json()
    settings = Settings(redis_url=server_redis(server), data_dir=server.log_path.parent)

    async def store() -> None:
        client = connect(settings.redis_url)
        try:
            sessions = SessionStore(client, Retention.from_settings(settings), Sealer.from_settings(settings))
            await sessions.save_summary(session["session_id"], {"session_id": session["session_id"], "transcript": [LINE]})
        finally:
            await client.aclose()

    asyncio.run(store())
    return session


def test_corrections_are_read_back_and_shown_in_the_summary(server, http):
    session = ended_call(server, http)
    url = f"/api/sessions/{session['session_id']}/corrections"
    none_yet = http.get(url, headers=bearer(session["token"]))
    assert none_yet.status_code == 200, none_yet.text
    assert none_yet.json() == {"session_id": session["session_id"], "label_set": "call_center", "corrections": []}

    posted = http.post(url, json={"utterance_id": 3, "speaker": "customer", "add": ["complaint"]},
                       headers=bearer(session["token"]))
    assert posted.status_code == 200, posted.text
    read = http.get(url, headers=bearer(session["token"])).json()["corrections"]
    assert len(read) == 1 and isinstance(read[0].pop("at"), float)
    assert read == [{"speaker": "customer", "utterance_id": 3, "labels": ["billing_inquiry", "complaint"],
                     "added": ["complaint"], "removed": [], "head_labels": ["billing_inquiry"], "agent": ""}]

    # Removing the head's label too: the head's labels are still what the head said.
    http.post(url, json={"utterance_id": 3, "speaker": "customer", "remove": ["billing_inquiry"]},
              headers=bearer(session["token"]))
    again = http.get(url, headers=bearer(session["token"])).json()["corrections"]
    assert [(c["labels"], c["added"], c["removed"], c["head_labels"]) for c in again] == [
        (["complaint"], ["complaint"], ["billing_inquiry"], ["billing_inquiry"])]

    summary = http.get(f"/api/sessions/{session['session_id']}/summary", headers=bearer(session["token"]))
    assert summary.status_code == 200, summary.text
    assert summary.json()["corrections"] == again  # the same list, the same shape
    assert summary.json()["transcript"][0]["intents"] == LINE["intents"], "the head's labels stay as they were"


def test_reading_corrections_back_is_refused_with_a_json_4xx(server, http):
    session = ended_call(server, http)
    other = http.post("/api/sessions", json={"mode": "assist"}).json()
    interview = http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist"}).json()
    url = f"/api/sessions/{session['session_id']}/corrections"
    cases = [
        (http.get("/api/sessions/0123456789abcdef/corrections", headers=bearer(session["token"])), 404, "unknown_session"),
        (http.get(url), 401, "missing_token"),
        (http.get(url, headers=bearer(other["token"])), 401, "bad_token"),  # another session's token
        (http.get(f"/api/sessions/{interview['session_id']}/corrections", headers=bearer(interview["token"])),
         404, "no_intents"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_code(response)) == (status, code), response.text
    # The session is unharmed by the refusals.
    assert http.get(url, headers=bearer(session["token"])).status_code == 200

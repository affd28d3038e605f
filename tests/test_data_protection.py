"""Deletion, erasure, the audit stream and the privacy notice, against live servers and a real Redis.

Keys are counted the way an auditor would: SCAN for every key of a session (and the
owner index), before and after; none may be left, and none may come back afterwards
from a call that was still writing. The calls are real (headless WebRTC callers,
corpus speech); the identities are API keys of the test's own (`--auth on`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Iterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from earshot.loadtest.caller import HeadlessCaller
from earshot.models.audio import read_audio
from earshot.models.redaction.kinds import KINDS
from earshot.server.audit import AUDIT_KEY, AuditEntry, AuditLog
from earshot.server.privacy import consent_sentence, duration_words
from earshot.server.settings import Settings
from earshot.server.store import KEY_PREFIX
from earshot.server.store_keys import owner_key
from tests.auth_fixtures import write_api_keys
from tests.calls import joined_clips, utterances_settled
from tests.conftest import ServerProcess, corpus_file, reference_text, start_server
from tests.test_api_errors import offer_sdp

pytestmark = pytest.mark.slow

CLIPS = ["utterances/LJ001-0002.wav", "utterances/LJ001-0005.wav", "utterances/LJ001-0009.wav"]
# Names of this module's own: the Redis (and its owner indexes and audit stream) is shared with other modules.
RUN = secrets.token_hex(3)
CANDIDATE, AGENT, LEAD, ADMIN = (f"{name}-{RUN}" for name in ("cand", "agent", "lead-blue", "root"))
IDENTITIES = {CANDIDATE: ("candidate", "red"), AGENT: ("agent", "red"), LEAD: ("supervisor", "blue"), ADMIN: ("admin", "ops")}


@pytest.fixture(scope="module")
def api_keys(tmp_path_factory) -> tuple[str, dict[str, str]]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.toml"
    return str(path), write_api_keys(path, IDENTITIES)


@pytest.fixture(scope="module")
def site(redis_url, tmp_path_factory, api_keys) -> Iterator[ServerProcess]:
    """auth on; a one-question interview without a voice, so that a report comes quickly."""
    srv = start_server(
        redis_url, tmp_path_factory.mktemp("protect"),
        extra_args=("--no-tts-enabled", "--no-intent-enabled", "--auth", "on", "--api-keys-file", api_keys[0],
                    "--interview-questions", "1", "--max-follow-ups", "0", "--turn-pause-ms", "600"),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keys(api_keys) -> dict[str, str]:
    return api_keys[1]


@pytest.fixture(scope="module")
def raw(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def keys_of(raw: redis.Redis, session_id: str) -> list[str]:
    return sorted(raw.scan_iter(match=f"{KEY_PREFIX}{session_id}*", count=1000))


def suffixes(raw: redis.Redis, session_id: str) -> list[str]:
    return [key.removeprefix(KEY_PREFIX + session_id) for key in keys_of(raw, session_id)]


def stream_id(text: str) -> tuple[int, int]:
    ms, seq = text.split("-")
    return int(ms), int(seq)


def caller_of(site: ServerProcess, credential: str, pcm: bytes = b"", **options) -> HeadlessCaller:
    return HeadlessCaller(site.base_url, pcm, credential=credential, **options)


async def ended_call(caller: HeadlessCaller) -> None:
    """Hang up and DELETE (without purge), keeping the caller's HTTP client for later requests."""
    await caller.hangup(end_session=True, keep_api=True)


# --- purge ------------------------------------------------------------------------------------
async def test_purging_a_live_call_deletes_every_key_and_nothing_comes_back(site, keys, raw):
    speech = joined_clips([corpus_file(clip) for clip in CLIPS], gap_s=1.0)
    caller = caller_of(site, keys[CANDIDATE], speech, mode="transcribe", role="data_scientist")
    await caller.connect()
    try:
        assert await caller.wait_until(lambda c: c.of_type("final"), timeout=40), "no final"
        sid = caller.session_id
        assert suffixes(raw, sid) == ["", ":finals", ":live"]
        assert sid in raw.smembers(owner_key(CANDIDATE))
        async with httpx.AsyncClient(base_url=site.base_url, timeout=30) as http:
            # Mid-call: the caller is still speaking, the write-behind queue and the outbox still writing.
            purged = await http.delete(f"/api/sessions/{sid}?purge=true", headers=bearer(caller.token))
            assert purged.status_code == 200, purged.text
            assert purged.json() == {"session_id": sid, "state": "purged", "keys_deleted": 3}
            assert keys_of(raw, sid) == [] and sid not in raw.smembers(owner_key(CANDIDATE))
            await asyncio.sleep(3.0)  # whatever the ended call still had to write, it has tried by now
            assert keys_of(raw, sid) == []
            again = await http.get(f"/api/sessions/{sid}", headers=bearer(caller.token))
            assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_session"
    finally:
        await caller.hangup(end_session=False)
    assert "Traceback" not in site.log()


async def test_an_assist_call_with_its_summary_is_purged_whole(site, keys, raw):
    speech = joined_clips([corpus_file(CLIPS[0])], gap_s=1.5)
    caller = caller_of(site, keys[AGENT], mode="assist", speakers={"agent": speech, "customer": speech})
    await caller.connect()
    try:
        await caller.wait_until(lambda c: c.track.pcm_done, timeout=30)
        assert await caller.wait_until(lambda c: c.of_type("final") and utterances_settled(c), timeout=30)
        await ended_call(caller)  # the DELETE answers once the summary is stored
        sid = caller.session_id
        assert suffixes(raw, sid) == ["", ":finals", ":live", ":summary"]
        summary = await caller.api("GET", "/summary")
        assert summary["session_id"] == sid
        purged = await caller.api("DELETE", "?purge=1")
        assert purged == {"session_id": sid, "state": "purged", "keys_deleted": 4}
        assert keys_of(raw, sid) == [] and raw.exists(owner_key(AGENT)) == 0
    finally:
        await caller.close_api()


def test_purge_takes_true_or_1_and_nothing_else(site, keys):
    with httpx.Client(base_url=site.base_url, timeout=30) as http:
        made = http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist"},
                         headers=bearer(keys[CANDIDATE])).json()
        url = f"/api/sessions/{made['session_id']}"
        for value in ("false", "0", "yes", "", "TRUE"):
            refused = http.delete(f"{url}?purge={value}", headers=bearer(made["token"]))
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_purge", value
        # A supervisor may read its team's sessions, never purge them (nor another team's).
        refused = http.delete(f"{url}?purge=true", headers=bearer(keys[LEAD]))
        assert refused.status_code == 403
        assert http.delete(f"{url}?purge=true", headers=bearer(keys[ADMIN])).json()["state"] == "purged"


# --- the right to erasure ---------------------------------------------------------------------
async def test_erasing_an_identity_deletes_all_it_created_live_calls_included(site, keys, raw):
    # 1. A whole interview, to its report.
    interview = caller_of(site, keys[CANDIDATE], role="software_engineer", difficulty="easy")
    await interview.connect()
    live = None
    try:
        assert await interview.wait_until(lambda c: any(e["state"] == "listening" for e in c.of_type("turn")), 90)
        interview.say(read_audio(corpus_file("utterances/LJ001-0009.wav")))
        assert await interview.wait_until(lambda c: c.of_type("report_ready"), 120), interview.of_type("turn")
        await ended_call(interview)
        assert suffixes(raw, interview.session_id) == ["", ":finals", ":live", ":report"]
        # 2. A call that is live while the identity is erased.
        live = caller_of(site, keys[CANDIDATE], joined_clips([corpus_file(c) for c in CLIPS], 1.0),
                         mode="transcribe", role="data_scientist")
        await live.connect()
        assert await live.wait_until(lambda c: c.of_type("final"), 40)
        # 3. One never connected; and another identity's, which must stay.
        with httpx.Client(base_url=site.base_url, timeout=30) as http:
            pending = http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist"},
                                headers=bearer(keys[CANDIDATE])).json()["session_id"]
            kept = http.post("/api/sessions", json={"mode": "assist"}, headers=bearer(keys[AGENT])).json()["session_id"]
            mine = sorted([interview.session_id, live.session_id, pending])
            assert sorted(raw.smembers(owner_key(CANDIDATE))) == mine
            before = {sid: len(keys_of(raw, sid)) for sid in mine}
            assert before[interview.session_id] == 4 and before[live.session_id] == 3 and before[pending] == 1

            refused = http.delete(f"/api/admin/identities/{CANDIDATE}/sessions", headers=bearer(keys[LEAD]))
            assert refused.status_code == 403
            erased = http.delete(f"/api/admin/identities/{CANDIDATE}/sessions", headers=bearer(keys[ADMIN]))
            assert erased.status_code == 200, erased.text
            assert erased.json() == {"owner": CANDIDATE, "sessions": mine, "keys_deleted": sum(before.values()) + 1}
            await asyncio.sleep(3.0)  # the live call has ended; what it still had to write found no session
            assert [keys_of(raw, sid) for sid in mine] == [[], [], []]
            assert raw.exists(owner_key(CANDIDATE)) == 0
            assert keys_of(raw, kept) != []
            gone = http.get(f"/api/sessions/{live.session_id}", headers=bearer(keys[ADMIN]))
            assert gone.status_code == 404
            again = http.delete(f"/api/admin/identities/{CANDIDATE}/sessions", headers=bearer(keys[ADMIN]))
            assert again.json() == {"owner": CANDIDATE, "sessions": [], "keys_deleted": 0}
    finally:
        await interview.close_api()
        if live is not None:
            await live.hangup(end_session=False)
    assert "Traceback" not in site.log()


# --- a call resumed after its live state expired ----------------------------------------------
async def test_an_offer_after_the_live_state_expired_is_409_session_expired(site, keys, raw):
    """Where it would resume is deleted by then: a reconnect would restart the clock and the interview beside the old transcript."""
    async with httpx.AsyncClient(base_url=site.base_url, timeout=30) as http:
        made = (await http.post("/api/sessions", json={"mode": "transcribe", "role": "data_scientist"},
                                headers=bearer(keys[CANDIDATE]))).json()
        # Created two days ago, as far as the store knows: past retention_live_s (one day).
        created = float(raw.hget(KEY_PREFIX + made["session_id"], "created_at"))
        raw.hset(KEY_PREFIX + made["session_id"], "created_at", f"{created - 2 * 86400:.3f}")
        offer = {"sdp": await offer_sdp(True, True), "type": "offer"}
        refused = await http.post(f"/api/sessions/{made['session_id']}/offer", json=offer, headers=bearer(made["token"]))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_expired"


# --- the audit stream -------------------------------------------------------------------------
def last_audit_id(raw: redis.Redis) -> str:
    """Where the shared audit stream ends now: a test reads what it caused after it."""
    newest = raw.xrevrange("earshot:audit", count=1)
    return newest[0][0] if newest else "-"


def test_reads_and_deletions_are_audited_without_a_word_of_the_transcript(site, keys, raw):
    mark = last_audit_id(raw)
    with httpx.Client(base_url=site.base_url, timeout=30) as http:
        made = http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist"},
                         headers=bearer(keys[CANDIDATE])).json()
        sid, url = made["session_id"], f"/api/sessions/{made['session_id']}"
        said = reference_text(CLIPS[0])
        raw.xadd(f"{KEY_PREFIX}{sid}:finals", {"event": json.dumps({"type": "final", "seq": 1, "text": said})}, id="1-0")
        assert http.get(url, headers=bearer(made["token"])).json()["finals"][0]["text"] == said
        assert http.get(url, headers=bearer(keys[ADMIN])).status_code == 200
        assert http.get(url, headers=bearer(keys[LEAD])).status_code == 403  # another team's
        assert http.get(url).status_code == 401  # no credential: refused, and recorded (the session exists)
        assert http.get(f"{url}/report", headers=bearer(made["token"])).status_code == 404  # not recorded: nothing read
        assert http.delete(url, headers=bearer(made["token"])).status_code == 200

        page = http.get(f"/api/admin/audit?session={sid}&after={mark}", headers=bearer(keys[ADMIN]))
        assert page.status_code == 200, page.text
        entries = page.json()["entries"]
        seen = [(e["who"], e["role"], e["action"], e["outcome"]) for e in entries]
        assert seen == [
            ("session-token", "", "transcript.read", "ok"),
            (ADMIN, "admin", "transcript.read", "ok"),
            (LEAD, "supervisor", "transcript.read", "forbidden"),
            ("anonymous", "", "transcript.read", "missing_credentials"),
            ("session-token", "", "session.delete", "ok"),
        ]
        assert all(e["session"] == sid and e["remote"] == "127.0.0.1" and e["at"] > 0 for e in entries)
        assert entries[0]["detail"] == {"finals": 1}
        assert not any(word in json.dumps(page.json()).lower() for word in said.lower().split() if len(word) > 4)
        # Reading the audit is audited: the next page begins with it.
        after = http.get(f"/api/admin/audit?session={sid}&after={page.json()['next']}", headers=bearer(keys[ADMIN]))
        assert [(e["who"], e["action"], e["detail"]) for e in after.json()["entries"]] == [
            (ADMIN, "audit.read", {"entries": 5})]
        # Only admins; a known identity's try is recorded, an anonymous one is not.
        assert http.get("/api/admin/audit", headers=bearer(keys[CANDIDATE])).status_code == 403
        assert http.get("/api/admin/audit").status_code == 401
        last = http.get(f"/api/admin/audit?count=1000&after={mark}", headers=bearer(keys[ADMIN])).json()["entries"][-1]
        assert (last["who"], last["action"], last["outcome"]) == (CANDIDATE, "audit.read", "forbidden")


def test_the_audit_pages_and_refuses_bad_parameters(site, keys):
    with httpx.Client(base_url=site.base_url, headers=bearer(keys[ADMIN]), timeout=30) as http:
        first = http.get("/api/admin/audit?count=2").json()
        assert len(first["entries"]) == 2 and first["next"] == first["entries"][-1]["id"]
        second = http.get(f"/api/admin/audit?count=2&after={first['next']}").json()
        assert second["entries"] and stream_id(second["entries"][0]["id"]) > stream_id(first["next"])
        bad = {
            "count=0": "bad_count", "count=1001": "bad_count", "count=ten": "bad_count", "count=-1": "bad_count",
            "count=" + "9" * 5000: "bad_count", "after=yesterday": "bad_after", "after=1-2-3": "bad_after",
            "after=": "bad_after", "after=18446744073709551616-0": "bad_after",
            "session=nope": "bad_session", "session=" + "A" * 16: "bad_session",
        }
        for query, code in bad.items():
            refused = http.get(f"/api/admin/audit?{query}")
            assert refused.status_code == 400 and refused.json()["error"]["code"] == code, query


def test_erasure_with_auth_none_is_404_and_the_audit_is_open_on_loopback(server, raw):
    mark = last_audit_id(raw)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        refused = http.delete("/api/admin/identities/anyone/sessions")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_identities"
        made = http.post("/api/sessions", json={"mode": "transcribe", "role": "data_scientist"}).json()
        assert http.get(f"/api/sessions/{made['session_id']}", headers=bearer(made["token"])).status_code == 200
        entries = http.get(f"/api/admin/audit?session={made['session_id']}&after={mark}").json()["entries"]
        assert [(e["who"], e["action"]) for e in entries] == [("session-token", "transcript.read")]
        latest = http.get(f"/api/admin/audit?count=1000&after={mark}").json()["entries"][-1]
        assert (latest["who"], latest["action"]) == ("anonymous", "audit.read")


# --- the privacy notice -----------------------------------------------------------------------
def test_the_privacy_notice_is_public_and_follows_the_settings(site):
    notice = httpx.get(site.base_url + "/api/privacy", timeout=30)
    assert notice.status_code == 200
    body = notice.json()
    assert body["retention_s"] == {"live": 86400, "transcripts": 7 * 86400, "reports": 30 * 86400}
    assert body["retention"] == {"live": "1 day", "transcripts": "7 days", "reports": "30 days"}
    assert body["redacted"] == {mode: list(KINDS) for mode in ("interview", "transcribe", "assist")}
    assert body["consent"]["interview"].startswith(
        "This call is transcribed and the transcript is stored for 7 days (the report for 30 days)")
    assert "Card numbers, phone numbers," in body["consent"]["assist"] and "call summary for 30 days" in body["consent"]["assist"]


def test_the_consent_sentence_says_what_the_settings_say():
    settings = Settings(retention_transcripts_s=2 * 86400, retention_reports_s=36 * 3600,
                        redact_transcribe="none", redact_assist="card,phone")
    assert consent_sentence(settings, "transcribe") == (
        "This call is transcribed and the transcript is stored for 2 days; the audio itself is not kept. "
        "Nothing said is removed before it is stored.")
    assert consent_sentence(settings, "assist") == (
        "This call is transcribed and the transcript is stored for 2 days (the call summary for 36 hours); "
        "the audio itself is not kept. Card numbers and phone numbers are removed before anything is stored.")
    assert [duration_words(s) for s in (60, 61, 3600, 86400, 90000)] == ["1 minute", "2 minutes", "1 hour", "1 day", "25 hours"]


async def test_one_session_s_entries_are_found_past_other_sessions_entries(redis_url):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    audit = AuditLog(client, retention_s=3600)
    try:
        newest = await client.xrevrange(AUDIT_KEY, count=1)
        mark = newest[0][0] if newest else "-"
        for n in range(30):
            await audit.append(AuditEntry("someone", "transcript.read", session=f"{n:016x}"))
        wanted = await audit.append(AuditEntry("someone", "report.read", session="feedfeedfeedfeed"))
        # Looking through `count` entries only, the page is empty, and says where to go on from.
        found, last = await audit.page(mark, count=5, session="feedfeedfeedfeed")
        assert found == [] and last is not None
        found, last = await audit.page(mark, count=5, session="feedfeedfeedfeed", scan=1000)
        assert [entry_id for entry_id, _ in found] == [wanted] and last == wanted
        # Unfiltered pages follow one another without a gap or an overlap.
        first, after_first = await audit.page(mark, count=20)
        second, _ = await audit.page(after_first, count=20)
        everything, _ = await audit.page(mark, count=1000)
        assert len(everything) == 31 and [i for i, _ in first + second] == [i for i, _ in everything]
    finally:
        await client.aclose()

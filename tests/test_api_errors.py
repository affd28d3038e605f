"""Bad input gets a clear JSON error, loses nothing, and the server keeps serving."""

import asyncio
import time

import httpx
import pytest
import redis.asyncio as aioredis
from aiortc import RTCPeerConnection

from earshot.server.abandoned_calls import UNENDED as ABANDONED
from earshot.server.ice import rtc_configuration
from earshot.server.protocol import EVENTS_CHANNEL
from earshot.server.store import KEY_PREFIX
from tests.calls import call_with
from tests.conftest import corpus_file


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


async def new_session(http) -> tuple[str, dict]:
    response = await http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist", "difficulty": "easy"})
    assert response.status_code == 201
    body = response.json()
    return body["session_id"], {"Authorization": f"Bearer {body['token']}"}


async def offer_sdp(audio: bool, data_channel: bool) -> str:
    pc = RTCPeerConnection(rtc_configuration())
    if audio:
        pc.addTransceiver("audio", direction="sendonly")
    if data_channel:
        pc.createDataChannel(EVENTS_CHANNEL)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def only_codec(sdp: str, payload_type: int, rtpmap: str) -> str:
    """Rewrite an offer so its audio offers one codec only."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=audio"):
            line = " ".join(line.split(" ")[:3] + [str(payload_type)])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        lines.append(line)
        if line.startswith("m=audio"):
            lines.append(f"a=rtpmap:{payload_type} {rtpmap}")
    return "\r\n".join(lines)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


async def test_session_creation_validates_its_body(http):
    assert_error(await http.post("/api/sessions", content=b"{not json"), 400, "bad_json")
    assert_error(await http.post("/api/sessions", json=["a", "list"]), 400, "bad_json")
    assert_error(await http.post("/api/sessions", json={"role": "astronaut"}), 400, "bad_role")
    assert_error(await http.post("/api/sessions", json={"role": "data_scientist", "difficulty": "brutal"}), 400, "bad_difficulty")
    assert_error(await http.post("/api/sessions", json={"mode": "karaoke", "role": "data_scientist"}), 400, "bad_mode")


async def test_oversized_bodies_are_refused(http):
    session_id, auth = await new_session(http)
    huge = {"sdp": "v=0\r\n" + "a=x\r\n" * 20000, "type": "offer"}
    assert_error(await http.post(f"/api/sessions/{session_id}/offer", json=huge, headers=auth), 413, "body_too_large")

    async def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(100):
            yield b"x" * 1024

    assert_error(await http.post("/api/sessions", content=chunks()), 413, "body_too_large")


async def test_unknown_session_and_bad_tokens(http):
    assert_error(await http.get("/api/sessions/0000000000000000", headers={"Authorization": "Bearer x"}), 404, "unknown_session")
    assert_error(await http.delete("/api/sessions/0000000000000000"), 404, "unknown_session")
    session_id, _ = await new_session(http)
    assert_error(await http.get(f"/api/sessions/{session_id}"), 401, "missing_token")
    assert_error(await http.get(f"/api/sessions/{session_id}", headers={"Authorization": "Bearer wrong"}), 401, "bad_token")
    other_id, other_auth = await new_session(http)
    assert_error(await http.get(f"/api/sessions/{session_id}", headers=other_auth), 401, "bad_token")


async def test_malformed_and_non_audio_offers_are_400(http):
    session_id, auth = await new_session(http)
    url = f"/api/sessions/{session_id}/offer"
    assert_error(await http.post(url, json={"sdp": "hello", "type": "offer"}, headers=auth), 400, "bad_sdp")
    assert_error(await http.post(url, json={"sdp": "v=0\r\nm=audio\r\n", "type": "offer"}, headers=auth), 400, "bad_sdp")
    assert_error(await http.post(url, json={"sdp": 42, "type": "offer"}, headers=auth), 400, "bad_offer")
    assert_error(await http.post(url, json={"sdp": await offer_sdp(True, True), "type": "answer"}, headers=auth), 400, "bad_offer")
    assert_error(await http.post(url, json={"sdp": await offer_sdp(False, True), "type": "offer"}, headers=auth), 400, "no_audio")
    assert_error(await http.post(url, json={"sdp": await offer_sdp(True, False), "type": "offer"}, headers=auth), 400, "no_data_channel")
    # Audio in a codec the server cannot decode: refused with the reason, not accepted in silence.
    isac = only_codec(await offer_sdp(True, True), 103, "ISAC/16000")
    response = await http.post(url, json={"sdp": isac, "type": "offer"}, headers=auth)
    assert_error(response, 400, "bad_codec")
    assert "cannot negotiate" in response.json()["error"]["message"]
    # Nothing was lost: the session is still usable.
    state = (await http.get(f"/api/sessions/{session_id}", headers=auth)).json()
    assert state["state"] == "created" and state["finals"] == []


async def test_second_offer_on_a_live_session_is_409_and_the_first_call_goes_on(server, http, redis_url):
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    caller = await call_with(server.base_url, corpus_file("utterances/LJ001-0002.wav"))
    try:
        # A live call is noted from its offer on (server/abandoned_calls.py): one whose instance is killed is analysed too.
        live_score = await raw.zscore(ABANDONED, caller.session_id)
        assert live_score is not None, "the live call was not noted"
        auth = {"Authorization": f"Bearer {caller.token}"}
        second = await http.post(
            f"/api/sessions/{caller.session_id}/offer", json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth
        )
        assert_error(second, 409, "session_live")
        assert caller.of_type("final")
    finally:
        await caller.hangup(end_session=False)
    # Closed with no DELETE: the entry now scores the close, due for analytics that long after it ...
    try:
        deadline = time.monotonic() + 20
        while (await raw.zscore(ABANDONED, caller.session_id) or 0) <= live_score and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await raw.zscore(ABANDONED, caller.session_id) or 0) > live_score, "the close was not noted"
        # ... until its DELETE, which ends it (and publishes it itself).
        assert (await http.delete(f"/api/sessions/{caller.session_id}", headers=auth)).status_code == 200
        assert await raw.zscore(ABANDONED, caller.session_id) is None
    finally:
        await raw.aclose()
    # DELETE ended it: a new offer is refused, the transcript stays readable.
    state = (await http.get(f"/api/sessions/{caller.session_id}", headers=auth)).json()
    assert state["state"] == "ended" and state["finals"]
    again = await http.post(
        f"/api/sessions/{caller.session_id}/offer", json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth
    )
    assert_error(again, 409, "session_ended")


async def test_server_still_healthy_after_bad_input(http):
    response = await http.get("/healthz")
    assert response.status_code == 200 and response.json()["redis"] is True


async def test_unknown_paths_and_methods_answer_json(http):
    assert_error(await http.get("/api/nothing-here"), 404, "not_found")
    assert_error(await http.get("/no-such-page.html"), 404, "not_found")
    response = await http.put("/api/sessions")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_only_the_client_s_own_files_are_served(http):
    assert (await http.get("/")).status_code == 200
    assert (await http.get("/assist.html")).status_code == 200
    assert (await http.get("/app.js")).headers["content-type"].startswith("text/javascript")
    assert_error(await http.get("/__init__.py"), 404, "not_found")  # the package marker of earshot.client


async def test_values_of_the_wrong_type_are_refused_not_crashed_on(http):
    assert_error(await http.post("/api/sessions", json={"mode": ["interview"]}), 400, "bad_mode")
    assert_error(await http.post("/api/sessions", json={"mode": "interview", "role": {"x": 1}}), 400, "bad_role")
    assert_error(await http.post("/api/sessions", json={"mode": "assist", "role": None}), 400, "bad_role")
    assert_error(
        await http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist", "difficulty": [1]}),
        400, "bad_difficulty",
    )


# --- hardening: what a prober sends -----------------------------------------------------------
LEAKS = ("Traceback", "Error", "None is not", "http://", "https://", "Exception", "object has no")


def assert_generic(response: httpx.Response) -> None:
    """An error message for a person: none of an exception's own words."""
    message = response.json()["error"]["message"]
    assert not any(leak in message for leak in LEAKS), message


async def test_every_field_of_the_wrong_type_is_a_400_with_its_code(http):
    wrong = [[], {}, 1, 1.5, True, None, ["data_scientist"], {"data_scientist": 1}]
    for value in wrong:
        for field, code in (("mode", "bad_mode"), ("role", "bad_role"), ("difficulty", "bad_difficulty")):
            body = {"mode": "interview", "role": "data_scientist", "difficulty": "easy", field: value}
            response = await http.post("/api/sessions", json=body)
            assert_error(response, 400, code)
            assert_generic(response)
    session_id, auth = await new_session(http)
    url = f"/api/sessions/{session_id}/offer"
    sdp = await offer_sdp(True, True)
    for value in wrong:
        assert_error(await http.post(url, json={"sdp": value, "type": "offer"}, headers=auth), 400, "bad_offer")
        assert_error(await http.post(url, json={"sdp": sdp, "type": value}, headers=auth), 400, "bad_offer")
        if value is not None:
            assert_error(await http.post(url, json={"sdp": sdp, "type": "offer", "tracks": value}, headers=auth), 400, "bad_tracks")


async def test_deep_nesting_is_bad_json_not_a_recursion_error(http):
    session_id, auth = await new_session(http)
    for body in (b"[" * 2000, b'{"a":' * 2000, b"[" * 20000 + b"]" * 20000):
        assert_error(await http.post("/api/sessions", content=body), 400, "bad_json")
        assert_error(await http.post(f"/api/sessions/{session_id}/offer", content=body, headers=auth), 400, "bad_json")


async def test_session_ids_not_of_the_documented_form_are_404_before_redis(http, redis_url):
    session_id, auth = await new_session(http)
    # What made `<id>:summary` a false outage: a key of another type under that name (WRONGTYPE -> 503).
    client = aioredis.Redis.from_url(redis_url)
    await client.set(f"{KEY_PREFIX}{session_id}:summary", "{}", ex=60)
    await client.aclose()
    bad_ids = [f"{session_id}:summary", f"{session_id}:finals", session_id.upper(), session_id[:-1], session_id + "0",
               "x" * 16, "%2e%2e", "0" * 1000]
    for bad in bad_ids:
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/report"), ("GET", "/summary"), ("POST", "/offer"),
                             ("GET", "/corrections")):
            body = {"sdp": "v=0", "type": "offer"} if method == "POST" else None
            response = await http.request(method, f"/api/sessions/{bad}{path}", json=body, headers=auth)
            assert_error(response, 404, "unknown_session")
            assert bad not in response.json()["error"]["message"]
    assert (await http.get(f"/api/sessions/{session_id}", headers=auth)).status_code == 200


async def test_of_simultaneous_offers_to_one_session_exactly_one_is_answered(http):
    session_id, auth = await new_session(http)
    offers = [await offer_sdp(True, True) for _ in range(8)]
    url = f"/api/sessions/{session_id}/offer"
    responses = await asyncio.gather(*(http.post(url, json={"sdp": sdp, "type": "offer"}, headers=auth) for sdp in offers))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} <= {"offer_in_progress", "session_live"}
    health = (await http.get("/healthz")).json()
    assert health["live_sessions"] >= 1
    assert (await http.delete(f"/api/sessions/{session_id}", headers=auth)).status_code == 200


async def test_a_delete_racing_an_offer_never_leaves_the_session_live(http):
    for _ in range(3):
        session_id, auth = await new_session(http)
        offered, deleted = await asyncio.gather(
            http.post(f"/api/sessions/{session_id}/offer", json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth),
            http.delete(f"/api/sessions/{session_id}", headers=auth),
        )
        assert offered.status_code in (200, 409) and deleted.status_code in (200, 409), (offered.text, deleted.text)
        if deleted.status_code == 409:
            assert deleted.json()["error"]["code"] == "offer_in_progress"
            assert (await http.delete(f"/api/sessions/{session_id}", headers=auth)).status_code == 200
        await asyncio.sleep(0.5)  # the call's last writes
        state = (await http.get(f"/api/sessions/{session_id}", headers=auth)).json()
        assert state["state"] == "ended" and not state["live"], state


def with_audio_sections(sdp: str, count: int) -> str:
    """The offer with `count` audio sections more (small ones: the body stays under its size limit)."""
    extra = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
    return sdp.rstrip("\r\n") + "\r\n" + extra * count


def without_fingerprints(sdp: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=fingerprint:"))


async def test_offers_past_what_a_call_needs_are_refused_before_aiortc(http):
    session_id, auth = await new_session(http)
    url = f"/api/sessions/{session_id}/offer"
    sdp = await offer_sdp(True, True)
    assert_error(await http.post(url, json={"sdp": with_audio_sections(sdp, 608), "type": "offer"}, headers=auth), 400, "too_many_media")
    assert_error(await http.post(url, json={"sdp": with_audio_sections(sdp, 7), "type": "offer"}, headers=auth), 400, "too_many_media")
    assert_error(await http.post(url, json={"sdp": without_fingerprints(sdp), "type": "offer"}, headers=auth), 400, "no_fingerprint")
    # An audio section without its a=mid: aiortc half set up a connection it then could not close (a 500).
    no_mid = sdp.replace("\r\na=mid:0\r\n", "\r\n", 1)
    assert no_mid != sdp
    assert_error(await http.post(url, json={"sdp": no_mid, "type": "offer"}, headers=auth), 400, "bad_sdp")
    stray_bundle = sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 1", 1)
    assert stray_bundle != sdp
    assert_error(await http.post(url, json={"sdp": stray_bundle, "type": "offer"}, headers=auth), 400, "bad_sdp")
    made_up = only_codec(sdp, 101, "X-MADE-UP/48000/2")
    response = await http.post(url, json={"sdp": made_up, "type": "offer"}, headers=auth)
    assert_error(response, 400, "bad_codec")
    assert_generic(response)
    # What aiortc itself refuses gets a generic message; its own words go to the log.
    no_ice = "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith(("a=ice-ufrag", "a=ice-pwd")))
    response = await http.post(url, json={"sdp": no_ice, "type": "offer"}, headers=auth)
    assert response.status_code == 400, response.text
    assert_generic(response)
    state = (await http.get(f"/api/sessions/{session_id}", headers=auth)).json()
    assert state["state"] == "created" and not state["live"]


async def test_closing_a_call_that_never_connected_is_immediate(http):
    session_id, auth = await new_session(http)
    answered = await http.post(f"/api/sessions/{session_id}/offer", json={"sdp": await offer_sdp(True, True), "type": "offer"}, headers=auth)
    assert answered.status_code == 200
    started = time.monotonic()
    ended = await http.delete(f"/api/sessions/{session_id}", headers=auth)
    took = time.monotonic() - started
    assert ended.status_code == 200 and ended.json()["state"] == "ended"
    assert took < 1.5, took  # 0.06 s measured; it was 10 s (the track loops were waited on)


async def test_other_methods_and_paths_answer_json(http):
    for method, path, status, code in (
        ("DELETE", "/api/sessions", 405, "method_not_allowed"),
        ("PATCH", "/api/sessions/0000000000000000", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("POST", "/", 405, "method_not_allowed"),
        ("GET", "/api/sessions/0000000000000000/nothing", 404, "not_found"),
        ("GET", "/sessions/not-a-session-id/report", 404, "unknown_session"),
        ("GET", "/sessions/0000000000000000:x/summary", 404, "unknown_session"),
    ):
        assert_error(await http.request(method, path), status, code)


async def test_a_405_allows_every_method_of_its_path(http):
    # GET and DELETE of a session are two routes, and the client's files take GET: the Allow header
    # must still list what the path takes, and GET of a POST-only path is no missing file.
    for method, path, allowed in (
        ("PUT", "/api/sessions/0000000000000000", "DELETE, GET, HEAD"),
        ("GET", "/api/sessions", "POST"),
        ("GET", "/api/sessions/0000000000000000/offer", "POST"),
        ("POST", "/app.js", "GET, HEAD"),
    ):
        response = await http.request(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)

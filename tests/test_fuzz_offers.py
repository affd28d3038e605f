"""Malformed SDP offers and garbage media against a live server: JSON 4xx, never a 500 or a hang, no traceback.

The offers are tests/sdp_corpus.py, each made from one real offer and posted to a
session of its own. The media is the load tester's garbage-RTP fault caller
(loadtest/faults.py): random Opus payloads and malformed RTP over a real connection;
after it the server still answers /healthz and a normal call.
"""

import json

import httpx

from earshot.loadtest.faults import run_fault
from tests import fuzz_support as fuzz
from tests.calls import call_with
from tests.conftest import corpus_file
from tests.sdp_corpus import MAY_CONNECT, malformed_offers
from tests.test_api_errors import offer_sdp

REQUEST_TIMEOUT_S = 15  # an offer that takes longer is a hang
CLIP = "utterances/LJ001-0002.wav"
fuzz_server = fuzz.fuzz_server  # the module's own live server (a fixture)


# First: an offer the server wrongly accepts (see the corpus) can fail in aiortc tens of seconds later.
async def test_garbage_media_leaves_the_server_serving(fuzz_server):
    since = len(fuzz_server.log())  # this test's own part of the log
    result = await run_fault("garbage_rtp", fuzz_server.base_url, corpus_file(CLIP))
    fuzz.record_figures(
        "garbage_rtp",
        {"error": result.error, "freed_after_s": result.freed_after_s, "notes": result.notes,
         "tracebacks": len(fuzz.tracebacks(fuzz_server, since))},
    )
    assert result.error is None, result.error
    assert result.freed_after_s is not None
    fuzz.assert_no_tracebacks(fuzz_server, since)
    async with httpx.AsyncClient(base_url=fuzz_server.base_url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
    caller = await call_with(fuzz_server.base_url, corpus_file(CLIP))
    try:
        assert caller.of_type("final"), "a normal call after the garbage got no final"
    finally:
        await caller.hangup()
    fuzz.assert_no_tracebacks(fuzz_server, since)


async def test_malformed_offers_are_json_4xx(fuzz_server):
    offers = malformed_offers(await offer_sdp(audio=True, data_channel=True))
    outcomes: dict[str, str] = {}
    failures = []
    async with httpx.AsyncClient(base_url=fuzz_server.base_url, timeout=REQUEST_TIMEOUT_S) as http:
        for name, body in offers.items():
            session_id, token = fuzz.new_session(fuzz_server.base_url)
            content = body if isinstance(body, bytes) else json.dumps(body).encode()  # ASCII: lone surrogates escaped
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            try:
                response = await http.post(f"/api/sessions/{session_id}/offer", content=content, headers=headers)
            except httpx.TimeoutException:
                outcomes[name] = "timeout"
                failures.append(f"{name}: no answer within {REQUEST_TIMEOUT_S} s")
                continue
            # An accepted offer is left to the server's connect timeout: nothing answers its ICE checks.
            if response.status_code == 200 and name in MAY_CONNECT:
                outcomes[name] = "200 answer"
                continue
            try:
                outcomes[name] = f"{response.status_code} {fuzz.assert_json_error(response, name)}"
            except AssertionError as exc:
                outcomes[name] = f"{response.status_code}"
                failures.append(str(exc).splitlines()[0][:200])
    print("\n".join(f"  {name}: {outcome}" for name, outcome in outcomes.items()))
    fuzz.record_figures(
        "sdp_corpus",
        {"offers": len(offers), "refused_4xx": sum(o[0] == "4" for o in outcomes.values()), "failed": len(failures),
         "server_errors": sum(o[0] == "5" for o in outcomes.values()), "tracebacks": len(fuzz.tracebacks(fuzz_server)),
         "outcomes": outcomes},
    )
    assert not failures, "\n".join(failures)
    fuzz.assert_no_tracebacks(fuzz_server)

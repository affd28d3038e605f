"""Media through a TURN relay: Debian's coturn on loopback, relay forced on the caller's side.

coturn runs as a real process with the TURN REST shared secret
(`use-auth-secret`); the Earshot server under test mints each session's
credentials from the same secret. The callers (aiortc, then Chromium) gather
relay candidates only, so a call that connects went through coturn; expired or
wrongly signed credentials must fail with the TURN error, not a generic one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from earshot.loadtest.caller import HeadlessCaller, IceFailed
from earshot.models.audio import read_audio
from earshot.server.errors import StartupError
from earshot.server.ice import restrict_ice_addresses, restrict_ice_to_loopback
from earshot.server.settings import SettingsError
from earshot.server.settings_sources import settings_from_env
from earshot.server.turn import IceServers, mint_turn_credentials
from tests.calls import call_with_pcm
from tests.conftest import corpus_file, free_port, start_server
from tests.test_browser import browser_page, wait_for_js  # noqa: F401 (the fixture: Chromium with a corpus WAV as its microphone)

TURNSERVER = "/usr/bin/turnserver"
CLIP = "utterances/LJ001-0002.wav"
REALM = "earshot.test"


# --- credentials and settings: no network -----------------------------------------------------
def test_minted_credentials_follow_the_turn_rest_convention():
    minted = mint_turn_credentials("s3cret", 600, "abc123", now=1_700_000_000.7)
    assert minted.username == "1700000600:abc123"
    expected = hmac.new(b"s3cret", b"1700000600:abc123", hashlib.sha1).digest()
    assert base64.b64decode(minted.credential) == expected


def test_session_entries_stun_bare_turn_with_credentials():
    settings = settings_from_env({
        "EARSHOT_ICE_SERVERS": "stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349",
        "EARSHOT_TURN_SECRET": "s3cret",
        "EARSHOT_TURN_TTL_S": "3600",
    })
    stun, turn = IceServers.from_settings(settings).entries("sess1", now=1000)
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
    assert turn["username"] == "4600:sess1"
    assert turn["credential"] == mint_turn_credentials("s3cret", 3600, "sess1", 1000).credential

    fixed = settings_from_env({
        "EARSHOT_ICE_SERVERS": "turn:turn.example.org", "EARSHOT_TURN_USERNAME": "u", "EARSHOT_TURN_PASSWORD": "p",
    })
    assert IceServers.from_settings(fixed).entries("sess1") == [
        {"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}
    ]
    assert IceServers.from_settings(settings_from_env({})).entries("sess1") == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EARSHOT_ICE_SERVERS": "turn:ok.example.org, http://turn.example.org"}, "must start with stun:, turn: or turns:"),
        ({"EARSHOT_ICE_ADDRESSES": "10.0.0.1, not-an-ip"}, "ice_addresses must be IP addresses"),
        ({"EARSHOT_ICE_ADDRESSES": "127.0.0.1", "EARSHOT_ICE_LOOPBACK_ONLY": "1"}, "exclude each other"),
        ({"EARSHOT_TURN_SECRET": "s3cret"}, "need a turn: or turns: URL"),
        ({"EARSHOT_ICE_SERVERS": "stun:stun.example.org, turn:turn.example.org"}, "need turn_secret or turn_username"),
    ],
)
def test_ice_settings_are_checked(env, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env(env)


def test_ice_addresses_keep_only_the_allowed_host_addresses():
    import aioice.ice

    try:
        restrict_ice_addresses(["127.0.0.1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
        with pytest.raises(StartupError, match="192.0.2.99 not on this host"):
            restrict_ice_addresses(["127.0.0.1", "192.0.2.99"])  # TEST-NET-1: never a real interface
    finally:
        restrict_ice_to_loopback()  # this process's callers stay on loopback (tests/conftest.py)


def test_serve_refuses_an_ice_address_this_host_lacks(redis_url, tmp_path):
    from tests.conftest import serve_expecting_failure

    result = serve_expecting_failure(redis_url, tmp_path, "--ice-addresses", "192.0.2.99")
    assert result.returncode != 0
    assert "ice_addresses 192.0.2.99 not on this host" in result.stdout + result.stderr


# --- a real TURN server -----------------------------------------------------------------------
@dataclass
class Coturn:
    port: int
    secret: str
    log_path: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def refused_entries(self, problem: str, session_id: str) -> list[dict]:
        """ICE server entries for this TURN server whose credentials it must refuse."""
        if problem == "expired":  # signed right, but their expiry passed an hour ago
            minted = mint_turn_credentials(self.secret, 60, session_id, now=time.time() - 3600)
        else:  # "wrong secret": not yet expired, signed with another secret
            minted = mint_turn_credentials("not-" + self.secret, 3600, session_id, now=time.time())
        return [{"urls": [self.url], "username": minted.username, "credential": minted.credential}]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory) -> Iterator[Coturn]:
    if not shutil.which(TURNSERVER):
        pytest.fail("Debian coturn is missing: apt-get install coturn (make test does)")
    folder = tmp_path_factory.mktemp("coturn")
    port, secret = free_port(), secrets.token_hex(16)
    relay_low = 49152 + (port % 1000) * 16  # a small relay port range of its own
    log_path = folder / "turnserver.log"
    process = subprocess.Popen(
        [
            TURNSERVER, "-n",
            "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
            f"--min-port={relay_low}", f"--max-port={relay_low + 15}",
            "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={REALM}",
            "--no-tls", "--no-dtls", "--no-cli", "--no-software-attribute",
            "--allow-loopback-peers",  # coturn refuses 127.0.0.0/8 peers by default; the server is one
            f"--pidfile={folder / 'turnserver.pid'}", f"--userdb={folder / 'turndb'}",
            "--log-file=stdout", "--simple-log", "--verbose",
        ],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    turn = Coturn(port, secret, log_path, process)
    deadline = time.monotonic() + 15
    while "Total General servers" not in turn.log():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"turnserver did not start:\n{turn.log()}")
        time.sleep(0.1)
    yield turn
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def turn_server(redis_url, coturn, tmp_path_factory):
    """An Earshot server whose sessions and own peer connections use the coturn above."""
    srv = start_server(
        redis_url, tmp_path_factory.mktemp("turn-server"),
        extra_args=("--ice-servers", coturn.url, "--turn-secret", coturn.secret),
    )
    yield srv
    srv.stop()


def allocations_for(coturn: Coturn, session_id: str) -> list[str]:
    """coturn's log lines of successful allocations by this session's TURN username."""
    return [
        line for line in coturn.log().splitlines()
        if f":{session_id}>" in line and "ALLOCATE processed, success" in line
    ]


async def test_sessions_hand_out_minted_turn_credentials(turn_server, coturn):
    async with httpx.AsyncClient(base_url=turn_server.base_url) as http:
        response = await http.post("/api/sessions", json={"mode": "interview", "role": "data_scientist"})
    body = response.json()
    [entry] = body["ice_servers"]
    expiry, user = entry["username"].split(":")
    assert entry["urls"] == [coturn.url]
    assert user == body["session_id"]  # the session, never the person
    assert 14400 - 60 <= int(expiry) - time.time() <= 14400
    assert entry["credential"] == mint_turn_credentials(coturn.secret, 0, body["session_id"], int(expiry)).credential


@pytest.mark.slow
async def test_a_relay_only_call_streams_speech_through_turn(turn_server, coturn):
    caller = HeadlessCaller(turn_server.base_url, read_audio(corpus_file(CLIP)), relay_only=True)
    try:
        await call_with_pcm(caller)
        finals = caller.of_type("final")
    finally:
        await caller.hangup()
    assert caller.local_candidate_types and set(caller.local_candidate_types) == {"relay"}
    assert finals and finals[0]["text"].strip(), caller.events
    assert allocations_for(coturn, caller.session_id), coturn.log()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["expired", "wrong secret"])
async def test_refused_turn_credentials_fail_the_call_with_an_ice_error(turn_server, coturn, problem):
    caller = HeadlessCaller(turn_server.base_url, read_audio(corpus_file(CLIP)), relay_only=True)
    session_id = await caller.create_session()
    caller.ice_servers = coturn.refused_entries(problem, session_id)
    try:
        with pytest.raises(IceFailed, match="the TURN server gave no relay address"):
            await caller.connect()
    finally:
        await caller.hangup()
    assert caller.local_candidate_types == []
    assert not allocations_for(coturn, session_id)
    assert re.search(rf"user <\d+:{session_id}>.*(401|438|unauthorized|Unauthorized)", coturn.log()), coturn.log()[-3000:]


# --- Chromium, relay forced by the page's ?ice=relay ------------------------------------------
def page_session_id(page) -> str:
    return page.evaluate("JSON.parse(sessionStorage.getItem('earshot.session')).session_id")


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_with_relay_forced_calls_through_turn(turn_server, coturn, browser_page):
    page = browser_page
    page.goto(turn_server.base_url + "/?ice=relay")
    page.get_by_test_id("role").select_option("data_scientist")
    page.get_by_test_id("start").click()
    wait_for_js(page, "window.earshot && window.earshot.state === 'live'", timeout=20000)
    page.get_by_test_id("transcript").locator(".final").first.wait_for(timeout=30000)
    assert page.get_by_test_id("transcript").locator(".final").first.inner_text().strip()
    assert allocations_for(coturn, page_session_id(page)), coturn.log()[-3000:]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("problem", ["expired", "wrong secret"])
def test_the_page_says_the_relay_refused_it(turn_server, coturn, browser_page, problem):
    """The session's answer is rewritten to carry credentials the TURN server refuses."""

    def refused_credentials(route):
        response = route.fetch()
        body = response.json()
        body["ice_servers"] = coturn.refused_entries(problem, body["session_id"])
        route.fulfill(response=response, json=body)

    page = browser_page
    page.route("**/api/sessions", refused_credentials)
    page.goto(turn_server.base_url + "/?ice=relay")
    page.get_by_test_id("role").select_option("data_scientist")
    page.get_by_test_id("start").click()
    wait_for_js(page, "window.earshot && window.earshot.state === 'error'", timeout=20000)
    status = page.get_by_test_id("status").inner_text()
    assert "Could not reach the media relay (TURN)" in status, status

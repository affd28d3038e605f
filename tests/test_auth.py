"""Who may do what, against real servers: tokens from an identity provider of the test's own, API keys, roles.

The identity provider is tests/auth_fixtures.py: an RSA key of the test's, its JWKS served over
HTTP on loopback. The server is `earshot serve --auth on` with real Redis.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Iterator

import httpx
import pytest

from earshot.loadtest.caller import CREDENTIAL_ENV, ApiCallError, HeadlessCaller, credential_headers
from earshot.server.app import create_app
from earshot.server.jwks import LEEWAY_S
from earshot.server.settings import Settings
from tests.auth_fixtures import IdentityProvider, auth_args, rsa_key, unsigned_token, write_api_keys
from tests.conftest import ServerProcess, free_port, serve_expecting_failure, start_server

INTERVIEW = {"mode": "interview", "role": "data_scientist", "difficulty": "easy"}
TRANSCRIBE = {"mode": "transcribe", "role": "data_scientist"}
ASSIST = {"mode": "assist"}
BAD_OFFER = {"sdp": "v=0\r\n", "type": "offer"}  # reaches the SDP checks only when the caller may offer


QUICK = ("--no-tts-enabled", "--no-intent-enabled")  # no voice or intents needed here: a quicker start


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    idp.add_key("k1")
    idp.start()
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def api_keys(tmp_path_factory) -> tuple[str, dict[str, str]]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.toml"
    keys = write_api_keys(path, {"blue-lead": ("supervisor", "blue"), "root": ("admin", "ops")})
    return str(path), keys


@pytest.fixture(scope="module")
def auth_server(redis_url, tmp_path_factory, provider, api_keys) -> Iterator[ServerProcess]:
    keys_file, _ = api_keys
    srv = start_server(redis_url, tmp_path_factory.mktemp("auth-server"), extra_args=(*QUICK, *auth_args(provider, keys_file)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(auth_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def credentials(provider, api_keys) -> dict[str, str]:
    """Each identity column of the matrix: tokens for some, API keys for the others."""
    _, keys = api_keys
    return {
        "candidate": provider.token("cand-1", ["candidate"], "red"),
        "agent": provider.token("agent-1", "agent", "red"),  # a roles claim may be a string
        "sup_red": provider.token("lead-red", ["supervisor", "unrelated-role"], "red"),
        "sup_blue": keys["blue-lead"],
        "admin": keys["root"],
    }


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def expect(response: httpx.Response, status: int, code: str = "") -> None:
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def create(http: httpx.Client, credential: str, body: dict) -> dict:
    response = http.post("/api/sessions", json=body, headers=bearer(credential))
    assert response.status_code == 201, response.text
    return response.json()


# --- the role x endpoint matrix --------------------------------------------------------------------
# Columns: the identities above; "none" sends no credential; "own" is the token of the session the row
# addresses; "other" the token of another session. {I} is an interview session of "candidate" (team red),
# {S} an assist session of "agent" (team red), {D} a fresh interview session of "candidate" per cell,
# {N} an identity's name (one that created nothing).
# A cell is the status, and the error code when there is one: 401m missing_credentials, 401b
# bad_credentials, 403 forbidden. Allowed calls answer as the endpoint does (400 bad_sdp for the
# deliberately empty offer, 404 for a report or summary that does not exist yet, or an utterance of a
# call that never was; 409 for reloading intent heads on a server whose intents are off).
CALLERS = ("candidate", "agent", "sup_red", "sup_blue", "admin", "none", "own", "other")
MATRIX = """
request                              candidate  agent    sup_red  sup_blue  admin    none     own      other
POST   /api/sessions interview       201        403      403      403       201      401m     401b     401b
POST   /api/sessions transcribe      201        403      403      403       201      401m     401b     401b
POST   /api/sessions assist          403        201      403      403       201      401m     401b     401b
POST   /api/sessions/{I}/offer       400        403      403      403       400      401m     400      401b
POST   /api/sessions/{S}/offer       403        400      403      403       400      401m     400      401b
GET    /api/sessions/{I}             200        403      200      403       200      401m     200      401b
GET    /api/sessions/{S}             403        200      200      403       200      401m     200      401b
GET    /api/sessions/{I}/report      404        403      404      403       404      401m     404      401b
GET    /api/sessions/{S}/summary     403        404      404      403       404      401m     404      401b
DELETE /api/sessions/{D}             200        403      403      403       200      401m     200      401b
DELETE /api/sessions/{D}?purge=true  200        403      403      403       200      401m     200      401b
GET    /api/calls                    403        200      200      200       200      401m     401b     401b
GET    /api/calls/{S}                403        404      404      404       404      401m     401b     401b
GET    /sessions/{I}/report          200        200      200      200       200      200      200      200
GET    /sessions/{S}/summary         200        200      200      200       200      200      200      200
GET    /healthz                      200        200      200      200       200      200      200      200
GET    /healthz/live                 200        200      200      200       200      200      200      200
GET    /healthz/ready                200        200      200      200       200      200      200      200
GET    /metrics                      403        403      403      403       200      401m     401b     401b
GET    /api/admin/settings           403        403      403      403       200      401m     401b     401b
DELETE /api/admin/identities/{N}/sessions 403   403      403      403       200      401m     401b     401b
GET    /api/admin/audit              403        403      403      403       200      401m     401b     401b
GET    /api/privacy                  200        200      200      200       200      200      200      200
POST   /api/sessions/{S}/corrections 403        404      403      403       404      401m     404      401b
GET    /api/sessions/{S}/corrections 403        200      200      403       200      401m     200      401b
POST   /api/admin/intent-heads/reload 403       403      403      403       409      401m     401b     401b
GET    /openapi.json                 200        200      200      200       200      200      200      200
GET    /                             200        200      200      200       200      200      200      200
"""
CODES = {"401m": (401, "missing_credentials"), "401b": (401, "bad_credentials"), "403": (403, "forbidden"),
         "400": (400, "bad_sdp"), "404": (404, "")}


def matrix_rows() -> list[tuple[str, str, str, dict[str, str]]]:
    rows = []
    for line in MATRIX.strip().splitlines()[1:]:
        method, path, *rest = line.split()
        body = rest[0] if len(rest) > len(CALLERS) else ""
        rows.append((method, path, body, dict(zip(CALLERS, rest[-len(CALLERS):]))))
    return rows


def test_the_matrix_walks_every_endpoint():
    app = create_app(SimpleNamespace(auth=None, settings=Settings()))  # type: ignore[arg-type] (only its routes are read)
    # The client's catch-all takes every method, to answer all but GET with a 405: it serves GET.
    routes = {(method, route.path) for route in app.routes for method in (route.methods or {"GET"}) - {"HEAD"}}
    as_route = {"{I}": "{session_id}", "{S}": "{session_id}", "{D}": "{session_id}", "{N}": "{name}"}
    walked = set()
    for method, path, _, _ in matrix_rows():
        path = path.split("?")[0]
        for placeholder, name in as_route.items():
            path = path.replace(placeholder, name)
        walked.add((method, "/{path:path}" if path == "/" else path))  # "GET /": the client's files
    assert routes == walked


def test_role_x_endpoint_matrix(http, credentials):
    interview = create(http, credentials["candidate"], INTERVIEW)
    assist = create(http, credentials["agent"], ASSIST)
    sessions = {"{I}": (interview, assist), "{S}": (assist, interview)}
    failures = []
    for method, path, body_name, cells in matrix_rows():
        for caller, expected in cells.items():
            if "{D}" in path:
                fresh = create(http, credentials["candidate"], INTERVIEW)
                target, other = fresh, interview
                url = path.replace("{D}", fresh["session_id"])
            else:
                placeholder = next((p for p in sessions if p in path), "{I}")
                target, other = sessions[placeholder]
                url = path.replace(placeholder, target["session_id"]).replace("{N}", "nobody-in-the-matrix")
            credential = {"none": None, "own": target["token"], "other": other["token"]}.get(caller, credentials.get(caller))
            body = {"interview": INTERVIEW, "transcribe": TRANSCRIBE, "assist": ASSIST}.get(body_name)
            if url.endswith("/offer"):
                body = BAD_OFFER
            elif url.endswith("/corrections") and method == "POST":  # allowed: 404, the session has had no call
                body = {"utterance_id": 1, "add": ["complaint"]}
            response = http.request(method, url, json=body, headers=bearer(credential) if credential else {})
            status, code = CODES[expected] if expected in CODES else (int(expected), "")
            got_code = response.json().get("error", {}).get("code", "") if response.headers.get(
                "content-type", "").startswith("application/json") and response.status_code >= 400 else ""
            if response.status_code != status or (code and got_code != code):
                failures.append(f"{method} {path} as {caller}: expected {expected}, got {response.status_code} {got_code}")
            elif status == 401 and response.headers.get("www-authenticate") != "Bearer":
                failures.append(f"{method} {path} as {caller}: 401 without WWW-Authenticate: Bearer")
    assert not failures, "\n".join(failures)


def test_health_is_detailed_for_admins_only(http, credentials):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/healthz", headers=bearer(credentials["sup_red"])).json() == {"status": "ok"}
    detailed = http.get("/healthz", headers=bearer(credentials["admin"])).json()
    assert detailed["status"] == "ok" and detailed["redis"] is True and "live_sessions" in detailed


def test_sessions_record_their_creator(http, credentials):
    session = create(http, credentials["admin"], INTERVIEW)
    # The admin (team ops) made it: a candidate and another team's supervisor cannot read it; the admin and its token can.
    url = f"/api/sessions/{session['session_id']}"
    expect(http.get(url, headers=bearer(credentials["candidate"])), 403, "forbidden")
    expect(http.get(url, headers=bearer(credentials["sup_red"])), 403, "forbidden")
    expect(http.get(url, headers=bearer(credentials["admin"])), 200)
    expect(http.get(url, headers=bearer(session["token"])), 200)


# --- tokens ------------------------------------------------------------------------------------------
def test_tokens_are_checked(http, provider):
    admin = "/api/admin/settings"
    expect(http.get(admin, headers=bearer(provider.token("ada", ["admin"]))), 200)
    forged = provider.token("ada", ["admin"], key=rsa_key())  # kid k1, another key's signature
    now = int(time.time())
    refused = {
        "bad signature": forged,
        "wrong issuer": provider.token("ada", ["admin"], iss="https://evil.example/"),
        "wrong audience": provider.token("ada", ["admin"], aud="another-api"),
        "expired": provider.token("ada", ["admin"], exp=now - LEEWAY_S - 60),
        "not yet valid": provider.token("ada", ["admin"], nbf=now + LEEWAY_S + 60),
        "alg none": unsigned_token("ada", ["admin"]),
        "HS256 with the public key": provider.hs256_with_public_key("ada", ["admin"]),
        "no Earshot role": provider.token("ada", ["viewer"]),
        "garbage": "not.a.token",
    }
    for why, token in refused.items():
        response = http.get(admin, headers=bearer(token))
        assert response.status_code == 401 and response.json()["error"]["code"] == "bad_credentials", why
    # The highest Earshot role a token names wins.
    expect(http.get(admin, headers=bearer(provider.token("ada", ["candidate", "admin"]))), 200)


def test_api_keys(http, api_keys):
    _, keys = api_keys
    expect(http.get("/metrics", headers=bearer(keys["root"])), 200)
    expect(http.get("/metrics", headers=bearer(keys["root"] + "x")), 401, "bad_credentials")
    expect(http.get("/metrics", headers={"Authorization": keys["root"]}), 401, "missing_credentials")  # no scheme


async def test_the_load_tester_creates_sessions_with_its_credential(auth_server, api_keys, monkeypatch):
    _, keys = api_keys
    monkeypatch.delenv(CREDENTIAL_ENV, raising=False)
    with pytest.raises(ApiCallError) as refused:
        await HeadlessCaller(auth_server.base_url, b"", mode="transcribe").create_session()
    assert refused.value.status == 401
    monkeypatch.setenv(CREDENTIAL_ENV, keys["root"])
    caller = HeadlessCaller(auth_server.base_url, b"", mode="transcribe")
    assert keys["root"] not in repr(caller)
    session_id = await caller.create_session()
    assert (await caller.session_state())["session_id"] == session_id  # then with the session's own token
    await caller.close_api()
    with httpx.Client(base_url=auth_server.base_url, headers=credential_headers()) as admin:
        expect(admin.get("/metrics"), 200)  # what the load tester scrapes


def test_no_credential_is_logged(http, auth_server, credentials):
    log = auth_server.log()
    assert all(credential not in log for credential in credentials.values())


def test_a_new_signing_key_is_fetched_once(http, provider, auth_server):
    """A token signed with a key the server has not seen refetches the JWKS, at most once per interval."""
    time.sleep(max(0.0, 10.5 - (time.monotonic() - provider.fetches[-1])))  # the server's refetch interval: 10 s
    provider.add_key("k2")
    expect(http.get("/api/admin/settings", headers=bearer(provider.token("ada", ["admin"], kid="k2"))), 200)
    fetched = len(provider.fetches)
    for n in range(5):  # unknown key ids right after a fetch: refused without asking the provider again
        expect(http.get("/api/admin/settings", headers=bearer(provider.token("ada", ["admin"], kid=f"forged-{n}", key=rsa_key()))), 401)
    assert len(provider.fetches) == fetched
    provider.add_key("k3", publish=False)
    expect(http.get("/api/admin/settings", headers=bearer(provider.token("ada", ["admin"], kid="k3"))), 401)


# --- starting the server -----------------------------------------------------------------------------
def test_serve_refuses_auth_none_beyond_loopback(redis_url, tmp_path):
    result = serve_expecting_failure(redis_url, tmp_path, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "--auth" in result.stderr and "--insecure-allow-anyone" in result.stderr


def test_internal_port_serves_metrics_and_the_detailed_health(redis_url, tmp_path):
    internal = free_port()
    srv = start_server(
        redis_url, tmp_path, extra_args=(*QUICK, "--host", "0.0.0.0", "--insecure-allow-anyone", "--internal-port", str(internal))
    )
    try:
        assert httpx.get(srv.base_url + "/healthz").json() == {"status": "ok"}
        expect(httpx.get(srv.base_url + "/metrics"), 403, "forbidden")
        metrics = httpx.get(f"http://127.0.0.1:{internal}/metrics")
        assert metrics.status_code == 200 and "earshot_" in metrics.text
        health = httpx.get(f"http://127.0.0.1:{internal}/healthz").json()
        assert health["redis"] is True and "asr_model" in health
    finally:
        srv.stop()
    assert srv.process.returncode != -9, srv.log()  # both servers stopped on SIGINT; not killed after the grace time


# --- the page ---------------------------------------------------------------------------------------
CREATE_IN_PAGE = """async () => {
  const api = await import(location.origin + "/api.js");
  try {
    return await api.createSession({mode: "interview", role: "data_scientist", difficulty: "easy"});
  } catch (error) {
    return {status: error.status, code: error.code};
  }
}"""


@pytest.mark.browser
def test_the_page_sends_its_credential(auth_server, credentials):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make test does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            # From the embedding site's sign-in: the token arrives in the fragment and leaves the address bar.
            page = browser.new_page()
            page.goto(f"{auth_server.base_url}/#access_token={credentials['candidate']}")
            assert "access_token" not in page.url
            assert page.evaluate(CREATE_IN_PAGE)["token"]
            # Without one: the server's 401 shows the Access key field, and a key entered there is used.
            page = browser.new_page()
            page.goto(f"{auth_server.base_url}/")
            assert page.evaluate(CREATE_IN_PAGE) == {"status": 401, "code": "missing_credentials"}
            page.fill("[data-testid=access-key] input", credentials["admin"])
            page.click("[data-testid=access-key] button")
            assert page.evaluate(CREATE_IN_PAGE)["token"]
        finally:
            browser.close()

"""HTTPS and browser safety against real server processes: headers, Host, Origin, timeouts, certificates.

Every check talks to `earshot serve` in a subprocess over real sockets (httpx,
or raw sockets where a client must misbehave). Timeouts are set to 1 s here so
that the slow-client checks take seconds.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from earshot.server.machine_names import MachineNames, machine_names
from earshot.server.security import HEADERS, allowed_hosts
from earshot.server.settings import Settings
from earshot.server.tls import certificate_names, fingerprint, self_signed
from tests.conftest import serve_expecting_failure, start_server

SESSION = {"mode": "interview", "role": "data_scientist", "difficulty": "easy"}
FAST_TIMEOUTS = ("--header-timeout-s", "1", "--body-timeout-s", "1")
ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def plain(redis_url, tmp_path_factory):
    srv = start_server(redis_url, tmp_path_factory.mktemp("plain"),
                       extra_args=(*FAST_TIMEOUTS, "--allowed-origins", ALLOWED_ORIGIN))
    yield srv
    srv.stop()


def port_of(server) -> int:
    return urlsplit(server.base_url).port


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate (and checks the host name against it)."""
    return ssl.create_default_context(cafile=str(cert))


def served_certificate(port: int) -> bytes:
    """The certificate (DER) the server presents on `port`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        return tls.getpeercert(binary_form=True)


def assert_browser_headers(response: httpx.Response, hsts: bool) -> None:
    for name, value in HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), (response.url, name)
    assert ("strict-transport-security" in response.headers) == hsts, response.url
    assert "server" not in response.headers, response.headers


def some_responses(client: httpx.Client, base_url: str) -> list[httpx.Response]:
    """JSON, a page, a script, a 404, a 405 and a refused request: every kind the server sends."""
    responses = [client.get(base_url + path) for path in ("/healthz", "/", "/app.js", "/no-such-file")]
    responses.append(client.delete(base_url + "/healthz"))
    responses.append(client.post(base_url + "/api/sessions", content=b"not json"))
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 405, 400]
    return responses


# --- headers --------------------------------------------------------------------------------


def test_every_response_carries_the_browser_headers_and_no_banner(plain):
    with httpx.Client() as client:
        for response in some_responses(client, plain.base_url):
            assert_browser_headers(response, hsts=False)
    assert "script-src" not in HEADERS[0][1].decode() and "unsafe-inline" not in HEADERS[0][1].decode()


def test_the_pages_have_no_inline_script_or_style():
    """The CSP refuses inline scripts, styles and event handlers: the client must not need them."""
    import re

    from earshot.server.client_files import client_dir

    for page in client_dir().glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), page
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I), page


# --- Host -------------------------------------------------------------------------------------


def test_an_unknown_host_gets_a_json_400(plain):
    port = port_of(plain)
    with httpx.Client() as client:
        refused = client.get(plain.base_url + "/healthz", headers={"host": f"rebound.example.com:{port}"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "bad_host"
        assert_browser_headers(refused, hsts=False)
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert client.get(plain.base_url + "/healthz", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_default_to_loopback_and_this_machine_beyond_it():
    here = MachineNames(("localhost", "box.lan"), ("127.0.0.1", "::1", "192.168.1.20"))
    loopback = ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(Settings(), here) == loopback
    assert allowed_hosts(Settings(host="0.0.0.0"), here) == [*loopback, "box.lan", "192.168.1.20"]
    assert allowed_hosts(Settings(tls="self-signed"), here) == [*loopback, "box.lan", "192.168.1.20"]
    # Listed names replace this machine's; loopback stays (the container's health check uses it).
    assert allowed_hosts(Settings(host="0.0.0.0", allowed_hosts="Voice.Example.com"), here) == [
        *loopback, "voice.example.com"]
    assert "*" in allowed_hosts(Settings(allowed_hosts="*"), here)


# --- Origin -----------------------------------------------------------------------------------


def test_state_changing_requests_from_another_origin_are_refused(plain):
    url = plain.base_url + "/api/sessions"
    with httpx.Client() as client:
        foreign = client.post(url, json=SESSION, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "bad_origin"
        assert_browser_headers(foreign, hsts=False)
        assert client.post(url, json=SESSION, headers={"origin": "null"}).status_code == 403
        # The page's own origin, a listed one, and no Origin at all (curl, scripts) pass.
        assert client.post(url, json=SESSION, headers={"origin": plain.base_url}).status_code == 201
        assert client.post(url, json=SESSION, headers={"origin": ALLOWED_ORIGIN}).status_code == 201
        created = client.post(url, json=SESSION)
        assert created.status_code == 201
        session, token = created.json()["session_id"], created.json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        # Reading is not state-changing; deleting is.
        assert client.get(f"{url}/{session}", headers={**auth, "origin": "https://evil.example"}).status_code == 200
        deleted = client.delete(f"{url}/{session}", headers={**auth, "origin": "https://evil.example"})
        assert deleted.status_code == 403
        assert client.get(f"{url}/{session}", headers=auth).status_code == 200


# --- timeouts (raw sockets: the client misbehaves) ---------------------------------------------


def seconds_until_closed(sock: socket.socket, limit_s: float = 10.0) -> float:
    """Read until the server closes the connection; how long that took."""
    sock.settimeout(limit_s)
    start = time.monotonic()
    while sock.recv(4096):
        pass
    return time.monotonic() - start


def test_a_request_head_that_never_ends_is_dropped(plain):
    with socket.create_connection(("127.0.0.1", port_of(plain))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert seconds_until_closed(sock) < 3


def test_a_head_trickled_byte_by_byte_is_dropped(plain):
    """Each byte would restart uvicorn's own keep-alive timer; the head timer counts from the start."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100  # 14 s at 10 bytes a second
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port_of(plain))) as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass  # the server closed the connection: sending fails
        else:
            pytest.fail("the server took the whole trickled head")
    assert time.monotonic() - start < 3


def test_the_next_head_on_a_kept_alive_connection_is_timed_too(plain):
    """uvicorn would keep an idle connection 5 s; a half-sent second request goes after the 1 s head timeout."""
    with socket.create_connection(("127.0.0.1", port_of(plain))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert seconds_until_closed(sock) < 3


def test_a_stalled_body_gets_a_json_408_and_the_connection_closes(plain):
    with socket.create_connection(("127.0.0.1", port_of(plain))) as sock:
        sock.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"mode\": ")
        sock.settimeout(5)
        start = time.monotonic()
        answer = b""
        while b"body_timeout" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert 0.8 < time.monotonic() - start < 3
        assert answer.startswith(b"HTTP/1.1 408") and b'"code":"body_timeout"' in answer
        assert seconds_until_closed(sock) < 3


# --- certificates -----------------------------------------------------------------------------


def test_self_signed_https_names_this_machine_and_is_reused_across_restarts(redis_url, tmp_path):
    srv = start_server(redis_url, tmp_path, extra_args=("--tls", "self-signed"))
    cert = tmp_path / "tls" / "self-signed-cert.pem"
    try:
        assert srv.base_url.startswith("https://")
        names = certificate_names(cert.read_bytes())
        assert {"localhost", "127.0.0.1", "::1", *machine_names().all} <= names
        assert os.stat(tmp_path / "tls" / "self-signed-key.pem").st_mode & 0o777 == 0o600
        # The client checks the server's name against the certificate: 127.0.0.1 and localhost both pass.
        with httpx.Client(verify=trusting(cert)) as client:
            for response in some_responses(client, srv.base_url):
                assert_browser_headers(response, hsts=True)
            localhost = srv.base_url.replace("127.0.0.1", "localhost")
            assert client.get(localhost + "/healthz").status_code == 200
        log = srv.log()
        assert fingerprint(cert.read_bytes()) in log
        assert f"https://localhost:{port_of(srv)}/" in log and "listening on https://" in log
        first = cert.read_bytes()
    finally:
        srv.stop()

    again = start_server(redis_url, tmp_path, port=port_of(srv), extra_args=("--tls", "self-signed"))
    try:
        assert cert.read_bytes() == first
        assert served_certificate(port_of(again)) == ssl.PEM_cert_to_DER_cert(first.decode())
    finally:
        again.stop()


def test_a_given_certificate_and_key_are_served(redis_url, tmp_path):
    files = self_signed(tmp_path / "mine", MachineNames(("localhost",), ("127.0.0.1",)))
    srv = start_server(redis_url, tmp_path / "data",
                       extra_args=("--tls-cert", str(files.cert), "--tls-key", str(files.key)))
    try:
        with httpx.Client(verify=trusting(files.cert)) as client:
            assert_browser_headers(client.get(srv.base_url + "/healthz"), hsts=True)
        assert served_certificate(port_of(srv)) == ssl.PEM_cert_to_DER_cert(files.cert.read_text())
        assert not (tmp_path / "data" / "tls").exists()  # nothing self-signed made beside it
    finally:
        srv.stop()


def test_a_certificate_that_cannot_be_used_stops_the_start(redis_url, tmp_path):
    files = self_signed(tmp_path / "mine", MachineNames(("localhost",), ("127.0.0.1",)))
    other = self_signed(tmp_path / "other", MachineNames(("localhost",), ("127.0.0.1",)))
    for cert, key in ((tmp_path / "missing.pem", files.key), (files.cert, other.key)):
        result = serve_expecting_failure(redis_url, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
        assert result.returncode != 0
        assert "cannot serve HTTPS with certificate" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_500_carries_the_headers_too():
    """Starlette answers a crash from outside the app's middleware: app.internal_error adds the headers itself."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from earshot.server.app import internal_error
    from earshot.server.security import security_middleware

    async def crash(request):
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/crash", crash)], middleware=security_middleware(Settings()),
                    exception_handlers={Exception: internal_error})
    with TestClient(app, base_url="https://localhost", raise_server_exceptions=False) as client:
        response = client.get("/crash")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert_browser_headers(response, hsts=True)

"""Browser safety on every response: security headers, the Host names the server answers, and an Origin check.

Three pure ASGI middlewares (not BaseHTTPMiddleware, which would buffer
streamed responses and run each request in another task), outermost first:

- `SecurityHeaders` adds the headers below to every response, errors and
  static files included; HSTS only when the request came over TLS (directly,
  or through a proxy that uvicorn trusts to say so with X-Forwarded-Proto).
- `TrustedHosts` answers only the Host names settings.allowed_hosts lists (by
  default loopback, plus this machine's names and addresses when it listens
  beyond loopback): a DNS-rebinding page cannot reach the API under its own name.
- `OriginCheck` refuses a state-changing request that a browser sends from
  another site's page: its Origin is neither the server's own nor one of
  settings.allowed_origins. A request without Origin (curl, scripts, the
  headless caller) is not a browser's cross-site request and passes.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earshot.server.errors import error_response
from earshot.server.machine_names import MachineNames, is_loopback, loopback_names, machine_names
from earshot.server.settings import Settings
from earshot.server.settings_checks import comma_list

# The client has no inline script or style (client/*.html load theirs from files): scripts,
# styles and fetches come from this origin only; the interviewer's voice plays from a
# MediaStream (blob: for a recorded call); the page may not be framed or post elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Report and summary links carry their token in the URL fragment, which is never sent;
    # no-referrer keeps even the path out of other sites' logs.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def security_headers(scheme: str) -> list[tuple[bytes, bytes]]:
    """The headers every response carries, for a request that came in over `scheme`."""
    return [*HEADERS, HSTS] if scheme == "https" else list(HEADERS)


def security_middleware(settings: Settings) -> list[Middleware]:
    return [
        Middleware(SecurityHeaders),
        Middleware(TrustedHosts, allowed_hosts=allowed_hosts(settings)),
        Middleware(OriginCheck, allowed_origins=comma_list(settings.allowed_origins)),
    ]


def allowed_hosts(settings: Settings, names: Optional[MachineNames] = None) -> list[str]:
    """The Host names to answer: loopback always (health checks), then the setting's, else this machine's when reachable."""
    listed = comma_list(settings.allowed_hosts)
    if not listed and (settings.tls == "self-signed" or not is_loopback(settings.host)):
        listed = list((names or machine_names()).all)
    hosts = []
    for host in [*loopback_names().all, *listed]:
        host = host.lower()
        # Starlette keeps the brackets of an IPv6 Host ([::1]:8000 -> [::1]).
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        if host not in hosts:
            hosts.append(host)
    return hosts


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["scheme"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TrustedHosts:
    """Starlette's TrustedHostMiddleware, with its plain-text refusal answered in JSON like every other error.

    Starlette's middleware decides: it runs `_trusted` (which marks the scope)
    for a good Host and sends its own 400 (dropped here) for a bad one.
    """

    TRUSTED = "earshot.trusted_host"

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._trusted, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.check(scope, receive, _discard)
            if not scope.pop(self.TRUSTED, False):
                await error_response(400, "bad_host", "this server does not answer to that Host name")(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @classmethod
    async def _trusted(cls, scope: Scope, receive: Receive, send: Send) -> None:
        scope[cls.TRUSTED] = True


class OriginCheck:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = {key for key in map(_origin_key, allowed_origins) if key is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None:
                own = _origin_key(f"{scope['scheme']}://{headers.get('host', '')}")
                key = _origin_key(origin)
                if key is None or (key != own and key not in self.allowed):
                    await error_response(403, "bad_origin", "requests from this origin are not allowed")(
                        scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _origin_key(origin: str) -> Optional[tuple[str, str, int]]:
    """scheme, host and port (the default one filled in) of an origin; None if it is not one ("null")."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


async def _discard(message: Message) -> None:
    pass

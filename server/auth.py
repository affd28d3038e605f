"""Who is calling: identities from an identity provider's tokens or from static API keys.

Earshot stores no accounts. With `auth on`, a caller sends `Authorization: Bearer <credential>`:

- an OIDC access token (a JWT, three dot-separated parts), checked against the provider's
  keys by server/jwks.py; the identity's name is the token's `sub`, its role comes from
  the claim `oidc_roles_claim` (a list or a space-separated string; a dotted name such as
  `realm_access.roles` reaches into an object, as Keycloak nests them; when it lists
  several Earshot roles the highest wins: admin > supervisor > agent > candidate), its
  team from `oidc_team_claim`;
- or a static API key, listed by its SHA-256 in the TOML file `api_keys_file`
  (deploy/api-keys.example.toml; `earshot api-key` makes one).

`IdentityMiddleware` resolves the bearer of every HTTP request once and leaves the
result at `request.state.identity` (an `Identity`, or None: auth none, no credential,
or a credential that is not an identity, such as a session's own token) and
`request.state.credential` ("missing", "bad" or "identity"). What an identity may do
is server/access.py. Tokens and keys are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from earshot.server.errors import StartupError
from earshot.server.jwks import JwksVerifier, OidcConfig, TokenRejected, jwks_url
from earshot.server.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

ROLES = ("candidate", "agent", "supervisor", "admin")  # lowest to highest


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # one of ROLES
    team: str


class BadCredentials(Exception):
    """The bearer is neither a valid token of the identity provider nor a known API key."""


def bearer(headers: Headers) -> Optional[str]:
    """The credential of `Authorization: Bearer <credential>`, or None."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_api_keys(path: Path) -> dict[str, Identity]:
    """The keys of an API keys file, by their SHA-256; a file that cannot be used stops the start."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"cannot read api_keys_file {path}: {exc}") from None
    keys: dict[str, Identity] = {}
    for number, entry in enumerate(document.get("key", []), start=1):
        values = {name: entry.get(name) if isinstance(entry, dict) else None for name in ("sha256", "name", "role", "team")}
        if not all(isinstance(value, str) for value in values.values()):
            raise StartupError(f"{path}: [[key]] number {number} needs sha256, name, role and team strings")
        digest = values["sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StartupError(f"{path}: key {values['name']!r}: sha256 must be 64 hex digits")
        if values["role"] not in ROLES:
            raise StartupError(f"{path}: key {values['name']!r}: role must be one of {', '.join(ROLES)}")
        keys[digest] = Identity(values["name"], values["role"], values["team"])
    return keys


def role_from_claim(value: Any) -> Optional[str]:
    """The highest Earshot role that a roles claim (a list, or a space-separated string) names."""
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    found = [ROLES.index(name) for name in names if isinstance(name, str) and name in ROLES]
    return ROLES[max(found)] if found else None


def claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class Authenticator:
    def __init__(
        self,
        verifier: Optional[JwksVerifier],
        api_keys: dict[str, Identity],
        roles_claim: str = "roles",
        team_claim: str = "team",
    ) -> None:
        self._verifier = verifier
        self._api_keys = api_keys
        self._roles_claim = roles_claim
        self._team_claim = team_claim

    @classmethod
    def from_settings(cls, settings: Settings) -> Optional["Authenticator"]:
        """None with auth none: every caller is anonymous and nothing is checked."""
        if settings.auth == "none":
            return None
        verifier = None
        if settings.oidc_issuer:
            url = jwks_url(settings.oidc_issuer, settings.oidc_jwks_url)
            verifier = JwksVerifier(OidcConfig(settings.oidc_issuer, settings.oidc_audience, url))
        keys = load_api_keys(Path(settings.api_keys_file)) if settings.api_keys_file else {}
        return cls(verifier, keys, settings.oidc_roles_claim, settings.oidc_team_claim)

    async def identify(self, credential: str) -> Identity:
        if credential.count(".") == 2:
            return await self._from_token(credential)
        found = self._api_keys.get(key_sha256(credential))
        if found is None:
            raise BadCredentials("not a known API key")
        return found

    async def _from_token(self, token: str) -> Identity:
        if self._verifier is None:
            raise BadCredentials("no identity provider is configured (oidc_issuer)")
        try:
            claims = await self._verifier.claims(token)
        except TokenRejected as exc:
            raise BadCredentials(str(exc)) from None
        role = role_from_claim(claim(claims, self._roles_claim))
        if role is None:
            raise BadCredentials(f"the token's {self._roles_claim!r} claim names no Earshot role")
        team = claim(claims, self._team_claim)
        return Identity(str(claims["sub"]), role, team if isinstance(team, str) else "")


class IdentityMiddleware:
    """Sets `request.state.identity` and `request.state.credential` on every HTTP request."""

    def __init__(self, app: ASGIApp, authenticator: Optional[Authenticator]) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            state["identity"], state["credential"] = await self._resolve(scope)
        await self.app(scope, receive, send)

    async def _resolve(self, scope: Scope) -> tuple[Optional[Identity], str]:
        if self.authenticator is None:
            return None, "missing"
        credential = bearer(Headers(scope=scope))
        if credential is None:
            return None, "missing"
        try:
            return await self.authenticator.identify(credential), "identity"
        except BadCredentials as exc:
            # Often a session's own token, which the session endpoints check next; the reason is for debugging.
            log.debug("%s %s: bearer is not an identity: %s", scope.get("method"), scope.get("path"), exc)
            return None, "bad"

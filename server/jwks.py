"""Checking an identity provider's access tokens (JWTs) against its published keys (JWKS).

The keys are fetched with httpx, asynchronously, and cached. A token signed with a
key id the cache does not know triggers one refetch (a provider rotating its keys),
at most once every `refetch_interval_s` so that a stream of forged key ids cannot
turn into a stream of requests to the provider; the cache is also refetched when it
is older than `max_age_s`.

Only asymmetric algorithms are accepted (RS256, ES256): never `none`, and never an
HMAC algorithm, which would let a caller sign with the public key as the secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
LEEWAY_S = 30  # clock skew allowed on exp / nbf / iat


class TokenRejected(Exception):
    """The token is not one this server accepts (the reason is for the log, never for the caller)."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str
    refetch_interval_s: float = 10.0
    max_age_s: float = 3600.0


class JwksVerifier:
    def __init__(self, config: OidcConfig) -> None:
        self._config = config
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of `token`, or `TokenRejected`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a JWT: {exc}") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise TokenRejected(f"algorithm {algorithm!r} is not accepted")
        key = await self._key(kid if isinstance(kid, str) else "")
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"{type(exc).__name__}: {exc}") from None

    async def _key(self, kid: str) -> Any:
        now = time.monotonic()
        stale = now - self._fetched_at > self._config.max_age_s
        if kid not in self._keys or stale:
            async with self._lock:
                # Another request may have refetched while this one waited for the lock.
                recent = time.monotonic() - self._fetched_at < self._config.refetch_interval_s
                if not recent and (kid not in self._keys or stale):
                    await self._fetch()
        key = self._keys.get(kid)
        if key is None:
            raise TokenRejected(f"unknown key id {kid!r}")
        return key

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()  # also on failure: a dead provider is asked again only after the interval
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self._config.jwks_url)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch the identity provider's keys from %s: %s", self._config.jwks_url, exc)
            return  # keep the keys we had
        self._keys = keys
        log.info("identity provider keys fetched: %d", len(keys))


def _parse_jwks(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, Any] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            keys[str(entry.get("kid", ""))] = jwt.PyJWK.from_dict(entry).key
        except jwt.PyJWTError as exc:
            log.warning("skipping a JWKS key: %s", exc)
    return keys


def jwks_url(issuer: str, configured: str) -> str:
    return configured or issuer.rstrip("/") + "/.well-known/jwks.json"

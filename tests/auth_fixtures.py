"""An identity provider of the tests' own: an RSA key, a JWKS served over HTTP on loopback, tokens minted with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from earshot.server.api_key_command import new_key, toml_entry

ISSUER = "https://id.earshot.test/realms/earshot"
AUDIENCE = "earshot-api"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class IdentityProvider:
    """Serves {"keys": [...]} at /jwks.json and records when it was fetched."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)  # the kids the JWKS lists
    fetches: list[float] = field(default_factory=list)  # time.monotonic() of each fetch
    url: str = ""
    _server: Optional[ThreadingHTTPServer] = None

    def start(self) -> "IdentityProvider":
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                provider.fetches.append(time.monotonic())
                body = json.dumps({"keys": [public_jwk(provider.keys[kid], kid) for kid in provider.published]}).encode()
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_key(self, kid: str, publish: bool = True) -> None:
        self.keys[kid] = rsa_key()
        if publish:
            self.published.append(kid)

    def token(self, sub: str, roles: Any, team: str = "", kid: str = "k1", key: Optional[rsa.RSAPrivateKey] = None,
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, "roles": roles, "team": team}
        payload.update(claims)
        return jwt.encode(payload, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def hs256_with_public_key(self, sub: str, roles: Any, kid: str = "k1") -> str:
        """A token 'signed' with HMAC, the public key's PEM as the secret: the classic algorithm confusion."""
        secret = self.keys[kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300, "roles": roles}
        signing_input = f"{_b64(header)}.{_b64(payload)}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def unsigned_token(sub: str, roles: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300, "roles": roles}
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(payload)}."


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def write_api_keys(path: Path, identities: dict[str, tuple[str, str]]) -> dict[str, str]:
    """An api_keys_file for {name: (role, team)}; returns {name: key}."""
    keys = {name: new_key() for name in identities}
    entries = [toml_entry(keys[name], name, role, team) for name, (role, team) in identities.items()]
    path.write_text("\n\n".join(entries) + "\n")
    return keys


def auth_args(provider: IdentityProvider, keys_file: Path) -> tuple[str, ...]:
    return (
        "--auth", "on",
        "--oidc-issuer", ISSUER,
        "--oidc-audience", AUDIENCE,
        "--oidc-jwks-url", provider.url,
        "--api-keys-file", str(keys_file),
    )

"""The ICE servers a session's two peers use: STUN as given, TURN with credentials.

A TURN server must know who may relay through it. With a shared secret
(coturn's `use-auth-secret` + `static-auth-secret`, the "TURN REST API"
convention) nothing is stored per user: the username is
"<expiry unix time>:<user id>" and the password is
base64(HMAC-SHA1(secret, username)), which the TURN server recomputes and
checks, refusing the credentials once the expiry has passed. The user id
here is the session id, so the TURN server's log holds no personal data.

Without a secret, `turn_username` / `turn_password` are handed out as they
are (one fixed account for every session).

The browser gets its entries in the answer to POST /api/sessions; the
server's own peer connection mints its own at offer time (same secret, same
session id, its own expiry): the TURN server checks each on its own, so
they need not be the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, Optional

from earshot.server.settings import Settings

STUN_SCHEMES = ("stun:",)
TURN_SCHEMES = ("turn:", "turns:")


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    credential: str


def mint_turn_credentials(secret: str, ttl_s: int, user_id: str, now: float) -> TurnCredentials:
    """TURN REST API credentials for `user_id`, valid until `now + ttl_s` (unix seconds)."""
    username = f"{int(now) + ttl_s}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"))


@dataclass(frozen=True)
class IceServers:
    """The configured STUN and TURN URLs and how TURN credentials are made."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""  # minted credentials when set
    turn_username: str = ""  # else this fixed account
    turn_password: str = ""
    turn_ttl_s: int = 14400

    @classmethod
    def from_settings(cls, settings: Settings) -> "IceServers":
        urls = settings.ice_server_urls
        return cls(
            stun_urls=tuple(url for url in urls if url.startswith(STUN_SCHEMES)),
            turn_urls=tuple(url for url in urls if url.startswith(TURN_SCHEMES)),
            turn_secret=settings.turn_secret.reveal(),
            turn_username=settings.turn_username,
            turn_password=settings.turn_password.reveal(),
            turn_ttl_s=settings.turn_ttl_s,
        )

    def entries(self, user_id: str, now: Optional[float] = None) -> list[dict[str, Any]]:
        """[{urls, username?, credential?}] as RTCPeerConnection takes them, for one session."""
        entries: list[dict[str, Any]] = []
        if self.stun_urls:
            entries.append({"urls": list(self.stun_urls)})
        if self.turn_urls:
            turn: dict[str, Any] = {"urls": list(self.turn_urls)}
            if self.turn_secret:
                minted = mint_turn_credentials(
                    self.turn_secret, self.turn_ttl_s, user_id, time.time() if now is None else now
                )
                turn.update(username=minted.username, credential=minted.credential)
            elif self.turn_username:
                turn.update(username=self.turn_username, credential=self.turn_password)
            entries.append(turn)
        return entries

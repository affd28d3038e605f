"""The proxy hop: a request for a call another instance holds (or was placed on) goes on to it.

Why a hop, and not a redirect or a routing header. Callers know one URL, the
load balancer's, and the instance that answers an offer must be the one the
call's media then reaches. A redirect would need every instance to have a
public URL of its own, and browsers drop the Authorization header on a
cross-origin redirect; a routing header needs an ingress that routes by it,
and each ingress spells that differently. A hop works behind any load
balancer: whichever instance the request reaches sends it on over the
cluster network to the owner's advertised URL, and relays the answer. It
costs one in-cluster round trip on signalling only (an offer, a DELETE, a
live call's summary); the media never takes it.

The hop keeps what the first instance checked: the Host the caller used (every
instance answers the same names), the caller's Authorization (the owner checks
it again: a hop grants nothing), and the caller's address and scheme in
X-Forwarded-For and X-Forwarded-Proto (uvicorn trusts these only from the
addresses FORWARDED_ALLOW_IPS names: 127.0.0.1 by default, "*" in the
Kubernetes manifests). Origin is left out: the first instance refused a
cross-site request already. `FORWARDED_BY` marks a hop, so the owner never
sends it on again: at most one hop, whatever the two instances believe.
"""

from __future__ import annotations

import logging
from typing import Optional

import httpx
from starlette.requests import Request
from starlette.responses import Response

from earshot.server.errors import ApiError

log = logging.getLogger(__name__)

FORWARDED_BY = "x-earshot-forwarded-by"
KEPT_HEADERS = ("authorization", "content-type", "host", "user-agent")
RELAYED_HEADERS = ("content-type", "retry-after")
CONNECT_TIMEOUT_S = 1.0  # an instance on the cluster network answers a connect in milliseconds
ANSWER_TIMEOUT_S = 30.0  # an offer's answer waits for ICE gathering, a few seconds at worst


class Forwarder:
    def __init__(self, instance_id: str) -> None:
        self._instance_id = instance_id
        self._client: Optional[httpx.AsyncClient] = None

    @staticmethod
    def was_forwarded(request: Request) -> bool:
        return FORWARDED_BY in request.headers

    async def forward(self, request: Request, base_url: str, body: bytes) -> Response:
        """`request` sent on to the instance at `base_url`, and its answer; ApiError 503 if it cannot be reached."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(ANSWER_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
        client_host = request.client.host if request.client is not None else ""
        earlier = request.headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{earlier}, {client_host}" if earlier else client_host
        headers["x-forwarded-proto"] = request.url.scheme
        headers[FORWARDED_BY] = self._instance_id
        url = base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            answer = await self._client.request(request.method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("%s %s: the instance at %s did not answer: %r", request.method, request.url.path, base_url, exc)
            raise ApiError(
                503, "instance_unreachable", "the server instance holding this call cannot be reached; try again shortly",
                headers={"Retry-After": "1"},
            ) from None
        relayed = {name: answer.headers[name] for name in RELAYED_HEADERS if name in answer.headers}
        return Response(answer.content, status_code=answer.status_code, headers=relayed)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

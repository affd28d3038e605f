"""Which instance answers a request about a session's call: this one, or another (server/forwarding.py).

    an offer     -> the instance holding the session's call, if one does (it answers 409 session_live,
                    or replaces a call it is closing); else the one placement picked, while it is ready
                    and has room; else this one, if ready with room; else placement picks again
    a DELETE,    -> the instance holding the call, if one does (it ends the call there); else this one
    a summary

A request another instance already sent on is answered here, whatever this
instance believes: at most one hop (server/forwarding.py).

The instance holding a call may have stopped (killed, or cut off from Redis).
Its hold lapses `instance_ttl_s` after its last beat, and until then nobody
may take the call over: two instances must never both hold it. Requests meanwhile
get 503 `call_moving` with Retry-After set to when the hold lapses; the page
and the headless caller wait that long and send the offer again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from starlette.requests import Request
from starlette.responses import Response

from earshot.server.cluster import retry_after_s
from earshot.server.errors import ApiError
from earshot.server.limits import at_capacity
from earshot.server.store import SessionRecord

if TYPE_CHECKING:
    from earshot.server.api import AppState


def call_moving(left_s: float) -> ApiError:
    return ApiError(
        503, "call_moving",
        f"the server instance that held this call stopped; the call can be resumed in {retry_after_s(left_s)} s",
        headers={"Retry-After": retry_after_s(left_s)},
    )


async def holder_url(state: "AppState", session_id: str) -> Optional[str]:
    """The URL of another instance holding the session's call; None when no other instance holds it."""
    cluster = state.cluster
    holder, left_s = await cluster.holder(session_id)
    if holder is None or holder == cluster.instance_id:
        return None
    beat = await cluster.instance(holder)
    if beat is None or beat.url == cluster.url:  # it stopped beating (a restart on this address: its old self)
        raise call_moving(left_s)
    return beat.url


@dataclass(frozen=True)
class Elsewhere:
    url: str  # the other instance's advertised URL
    holds_call: bool  # it holds the session's call (else placement picked it)


async def offer_url(state: "AppState", record: SessionRecord) -> Optional[Elsewhere]:
    """Where the session's offer is answered: None here, else the instance to send it to."""
    cluster = state.cluster
    held_by = await holder_url(state, record.session_id)
    if held_by is not None:
        return Elsewhere(held_by, holds_call=True)
    placed = record.placed_on
    if placed and placed != cluster.instance_id:
        beat = await cluster.instance(placed)
        if beat is not None and beat.ready and beat.busy < beat.capacity and beat.url != cluster.url:
            return Elsewhere(beat.url, holds_call=False)
    if not cluster.draining and state.calls.busy < state.settings.max_live_calls:
        return None
    picked = await cluster.place(record.session_id, state.store.retention.pending_s)
    if picked is None:
        raise at_capacity("every server instance is at its capacity for live calls; try again shortly")
    return None if picked.instance_id == cluster.instance_id else Elsewhere(picked.url, holds_call=False)


async def forwarded(state: "AppState", request: Request, url: str, *, to_holder: bool) -> Response:
    """The request answered by the instance at `url`. If it cannot be reached and holds the call,
    503 call_moving (its hold lapses soon); the caller decides for an instance placement picked."""
    body = getattr(request.state, "raw_body", b"")  # as read_json read it; a DELETE or GET has none
    try:
        return await state.forwarder.forward(request, url, body)
    except ApiError:
        if not to_holder:
            raise
        _holder, left_s = await state.cluster.holder(request.path_params["session_id"])
        raise call_moving(left_s) from None


async def answered_by_holder(state: "AppState", request: Request, session_id: str) -> Optional[Response]:
    """A request about a call that another instance holds (a DELETE, a live summary), answered there;
    None when this instance answers it (no other holds the call, or the request came by a hop)."""
    if state.forwarder.was_forwarded(request):
        return None
    there = await holder_url(state, session_id)
    return None if there is None else await forwarded(state, request, there, to_holder=True)

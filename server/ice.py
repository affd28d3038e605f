"""ICE configuration shared by the server and the headless test/load clients."""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

LOOPBACK = "127.0.0.1"


def restrict_ice_to_loopback() -> None:
    """Offer only 127.0.0.1 host candidates, in this process.

    aioice gathers host candidates from every interface except loopback, and
    has no option to change that, so its address lister is replaced here. Tests
    and load tests need it (their media must stay on this machine), and so does
    a demo on a box whose only route to the browser is loopback. It is
    process-wide by nature; call it once at start, before any connection.
    """
    aioice.ice.get_host_addresses = _loopback_addresses


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK] if use_ipv4 else []


def rtc_configuration(ice_servers: tuple[str, ...] = ()) -> RTCConfiguration:
    # An explicit empty list: given None, aiortc falls back to a public STUN server.
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])

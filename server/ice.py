"""ICE configuration shared by the server and the headless test/load clients."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from earshot.server.errors import StartupError
from earshot.server.settings import Settings
from earshot.server.settings_checks import comma_list

LOOPBACK = "127.0.0.1"
_HOST_ADDRESSES = aioice.ice.get_host_addresses  # aioice's own lister, kept before any replacement


def restrict_ice_addresses(allowed: Iterable[str]) -> None:
    """Offer only the `allowed` host addresses as ICE candidates, in this process.

    aioice gathers host candidates from every interface except loopback, and
    has no option to change that, so its address lister is replaced here by
    one that keeps only the allowed addresses (127.0.0.1 included when
    allowed). An allowed address this host does not have is a StartupError:
    its candidates could never be reached. It is process-wide by nature; call
    it once at start, before any connection.
    """
    wanted = [str(ipaddress.ip_address(address.strip())) for address in allowed]
    present = set(_HOST_ADDRESSES(use_ipv4=True, use_ipv6=True)) | {LOOPBACK}
    missing = [address for address in wanted if address not in present]
    if missing:
        raise StartupError(
            f"ice_addresses {', '.join(missing)} not on this host (its addresses: {', '.join(sorted(present))})"
        )

    def allowed_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = set(_HOST_ADDRESSES(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        if use_ipv4:
            found.add(LOOPBACK)
        return [address for address in wanted if address in found]

    aioice.ice.get_host_addresses = allowed_addresses


def restrict_ice_to_loopback() -> None:
    """Offer only 127.0.0.1 host candidates: tests and load tests (their media stays on this machine), one-box demos."""
    restrict_ice_addresses([LOOPBACK])


def restrict_ice_as_configured(settings: Settings) -> None:
    """`earshot serve`: ice_addresses, or loopback with ice_loopback_only; neither leaves every host address."""
    addresses = comma_list(settings.ice_addresses)
    if addresses:
        restrict_ice_addresses(addresses)
    elif settings.ice_loopback_only:
        restrict_ice_to_loopback()


def rtc_configuration(ice_servers: Sequence[dict[str, Any]] = (), relay_only: bool = False) -> RTCConfiguration:
    """`ice_servers` as server/turn.py builds them ({urls, username?, credential?});
    `relay_only` gathers TURN relay candidates only (as a browser's iceTransportPolicy "relay")."""
    # An explicit empty list: given None, aiortc falls back to a public STUN server.
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential"))
            for entry in ice_servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )

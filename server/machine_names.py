"""This machine's names and addresses: what a self-signed certificate covers and which Host headers the server answers.

One list for both (server/tls.py, server/security.py), so that every name the
certificate is good for is also a name the server answers to. Addresses come
from the network interfaces (ifaddr, which aioice already uses to gather ICE
candidates), not from resolving the host name, which on many machines only
gives 127.0.1.1. Link-local IPv6 addresses are left out: a browser cannot put
their zone in a URL.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import ifaddr

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class MachineNames:
    names: tuple[str, ...]  # DNS names, lower case, loopback first
    addresses: tuple[str, ...]  # IP addresses as text, loopback first

    @property
    def all(self) -> tuple[str, ...]:
        return self.names + self.addresses


def loopback_names() -> MachineNames:
    return MachineNames(LOOPBACK_NAMES, LOOPBACK_ADDRESSES)


def machine_names() -> MachineNames:
    """Loopback, then this machine's host name, fully qualified name and non-loopback interface addresses."""
    names = [*LOOPBACK_NAMES]
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.lower().rstrip(".")
        if name and name not in names and not is_ip(name):
            names.append(name)
    addresses = [*LOOPBACK_ADDRESSES]
    for address in _interface_addresses():
        if address not in addresses:
            addresses.append(address)
    return MachineNames(tuple(names), tuple(addresses))


def is_loopback(host: str) -> bool:
    """Is `host` (a bind address or a name) this machine only? The wildcard addresses are not."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _interface_addresses() -> list[str]:
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            # ifaddr gives IPv4 as a str and IPv6 as (address, flowinfo, scope_id).
            address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
            if not (address.is_loopback or address.is_link_local or address.is_unspecified):
                found.append(str(address))
    return found


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

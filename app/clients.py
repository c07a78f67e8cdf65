"""Who the client is: the peer's address, or ``X-Forwarded-For`` from trusted proxies.

A forwarded address is believed only when the peer itself is a configured proxy
(DNE_TRUSTED_PROXIES): anyone can send the header, so trusting it from everyone would
let one client pose as many (and dodge the rate limit). Behind a chain of proxies the
client is the last address in the header that is not one of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """``10.0.0.0/8``, ``::1`` or ``127.0.0.1``; a bad entry raises ValueError."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


class ClientAddresses:
    def __init__(self, trusted_proxies: list[Network]) -> None:
        self.trusted = trusted_proxies

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.trusted or not self.is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        address = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # a malformed hop: believe nothing further left of it
            address = hop
            if not self.is_trusted(hop):
                break
        return address

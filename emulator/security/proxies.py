"""The client's address behind trusted proxies (``--trusted-proxy``).

Behind a load balancer every connection comes from the balancer, so the address waitress reports
would make the sign-in throttle (`emulator.security.throttle`) count all clients as one, and the logs
name the balancer. A balancer says whom it serves in ``X-Forwarded-For``, appending the address of
its own peer to whatever the request already carried: only the right-hand end of the field was
written by proxies we run, anything to its left by whoever sent the request. So the field is read
from the right, as is the established practice: starting at the peer, while the address at hand is
in a trusted network, step one address to the left; the first address that is not trusted is the
client. A value that is not an IP address ends the walk at the last address known to be good: what
lies left of it cannot be vouched for, and taking it would let a client name itself.

Without trusted networks, or from a peer outside them, the header is ignored, so a client talking to
a node directly cannot choose the address its failed sign-ins are counted against.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"  # WSGI joins a header sent several times with commas


def _address(text: str) -> IPAddress | None:
    """The IP address `text` spells (an IPv4-mapped IPv6 address as the IPv4 one); None if it is none."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """Which peers may say whom they forward for; see the module docstring."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address, given the connection's peer and the request's X-Forwarded-For."""
        current = _address(peer)
        if current is None or not forwarded_for or not self.trusts(current):
            return peer
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:  # not an address: nothing from here leftwards can be vouched for
                break
            current = address
            if not self.trusts(current):
                break
        return str(current)

    def resolve(self, environ: dict[str, Any]) -> None:
        """Put the client's address in the request's REMOTE_ADDR, which everything naming the client reads."""
        if self.networks and FORWARDED_FOR in environ:
            environ["REMOTE_ADDR"] = self.client_address(environ.get("REMOTE_ADDR", ""), environ[FORWARDED_FOR])

"""Which addresses a delivery may connect to (SPEC §4, outbound safety): a pure policy.

Only globally routable addresses, unless a server setting names networks to allow (labs often
run their LIMS on a private network). IPv6 addresses that carry an IPv4 address are judged as
that address: IPv4-mapped (`::ffff:127.0.0.1`), IPv4-compatible (`::127.0.0.1`), NAT64
(`64:ff9b::a9fe:a9fe`, which a NAT64 gateway sends to 169.254.169.254) and 6to4
(`2002:7f00:1::`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, but some stacks still route it


class RefusedAddress(OSError):
    """The target resolves to an address deliveries may not reach; the message says which."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`"127.0.0.0/8, ::1/128"` → networks; ValueError naming the bad entry."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a network such as 10.0.0.0/8") from None
    return tuple(networks)


def _kind(address: IPAddress) -> str:
    if address.is_unspecified:
        return "the unspecified address, which reaches this machine"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    return "not a public address"


class AddressPolicy:
    """`allowed_networks` are reachable besides public addresses; with `public=False`, only
    they are (a lab whose deliveries must stay on its own networks)."""

    def __init__(self, allowed_networks: Iterable[IPNetwork] = (), public: bool = True) -> None:
        self.allowed = tuple(allowed_networks)
        self.public = public

    @staticmethod
    def unwrap(address: IPAddress) -> IPAddress:
        """The IPv4 address an IPv6 one carries, if it carries one; else the address."""
        if not isinstance(address, ipaddress.IPv6Address):
            return address
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if any(address in nat64 for nat64 in _NAT64) or (
            address in _IPV4_COMPATIBLE and int(address) > 1  # not :: nor ::1
        ):
            return embedded
        return address

    def refusal(self, address: IPAddress) -> str | None:
        """None when allowed, else why not."""
        plain = self.unwrap(address)
        if any(plain in network for network in self.allowed):
            return None
        if plain.is_global and not plain.is_multicast:
            if self.public:
                return None
            return (
                f"refused to connect to {address}: a public address, and "
                "LABHOOKS_DELIVER_TO_PUBLIC is off; only LABHOOKS_ALLOWED_NETWORKS may be reached"
            )
        return (
            f"refused to connect to {address}: {_kind(plain)}; "
            "LABHOOKS_ALLOWED_NETWORKS can allow its network"
        )

    def check(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The allowed addresses among those `host` resolved to; RefusedAddress if none are."""
        allowed, refusals = [], []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            refusal = self.refusal(address)
            if refusal is None:
                allowed.append(text)
            else:
                refusals.append(refusal)
        if not allowed:
            raise RefusedAddress(f"{host}: {refusals[0] if refusals else 'no address'}")
        return allowed

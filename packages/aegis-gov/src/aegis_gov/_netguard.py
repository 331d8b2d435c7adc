# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Address checks for the ``http_get`` built-in: which hosts a tool may reach.

The rule is an allowlist of *global unicast* addresses: anything loopback, private, link-local,
multicast, reserved, unspecified, shared (100.64.0.0/10) or a known cloud-metadata endpoint is
blocked. IPv6 forms that embed an IPv4 address (``::ffff:a.b.c.d``, 6to4 ``2002::/16``) are judged
by the embedded IPv4 address. Hosts written as numbers in the loose ``inet_aton`` forms
(``2130706433``, ``0x7f.1``, ``017700000001``) are parsed as the address they denote rather than
handed to a resolver, so they cannot slip through as "names".
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from typing import Union

__all__ = [
    "METADATA_ADDRESSES",
    "IPAddress",
    "Resolver",
    "blocked_reason",
    "literal_address",
    "parse_numeric_ipv4",
    "system_resolver",
]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007  # 3.10 runtime alias
Resolver = Callable[[str, int], Sequence[str]]

# Cloud metadata endpoints. Most fall in blocked ranges anyway; 168.63.129.16 (Azure) is global
# unicast, so it must be listed. These stay blocked even with allow_private_network=True.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "168.63.129.16",  # Azure wire server
    )
)

_NUMERIC_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def parse_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse *host* the way ``inet_aton`` does (1 to 4 decimal, octal or hex parts), else None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.match(p) for p in parts):  # noqa: PLR2004
        return None
    values: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 256 ** (4 - len(head)):  # noqa: PLR2004
        # Out of range: not an address; inet_aton refuses it, so must we.
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """Return the address *host* denotes literally (IPv6, IPv4 or numeric IPv4 form), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return parse_numeric_ipv4(host)


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, compatible), if any."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
        if any(address in net for net in _NAT64) or (
            address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
        ):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def blocked_reason(address: IPAddress, *, allow_private_network: bool) -> str | None:
    """Say why *address* may not be contacted, or return None when it may."""
    inner = _embedded_ipv4(address)
    if address in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
        return "a cloud metadata endpoint"
    if allow_private_network:
        return None
    checks = (
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("unspecified", inner.is_unspecified),
        ("loopback", inner.is_loopback),
        ("link-local", inner.is_link_local),
        ("multicast", inner.is_multicast),
        ("private", inner.is_private),
        ("reserved", inner.is_reserved),
    )
    for label, hit in checks:
        if hit:
            return f"a {label} address"
    if not inner.is_global:
        return "not a global address"
    return None


def system_resolver(host: str, port: int) -> Sequence[str]:
    """Resolve *host* with ``socket.getaddrinfo`` to its distinct addresses, in resolver order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)

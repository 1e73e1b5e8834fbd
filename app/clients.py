"""Who a client is: its address, and the unit per-client limits count.

Pure functions shared by every stage that judges a client (connection
limits, rate limits, reputation, rules); they import nothing of ours.
"""

from __future__ import annotations

import functools
import ipaddress

IPV6_CLIENT_PREFIX = 64


def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address (an IPv4-mapped IPv6 one as IPv4); None if `ip` is not one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)  # clients connect again and again
def client_key(ip: str) -> str:
    """The unit the per-client limit counts: the address, or its /64 for IPv6."""
    address = client_address(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)

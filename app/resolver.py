"""Asynchronous DNS for the authentication checks: dnspython's asyncio resolver
behind a cache with TTLs and a size cap.

Answers are plain tuples (TXT: the strings of each record; A/AAAA/PTR: text;
MX: (preference, exchange)); `None` means the name or the type does not
exist. A failed lookup (timeout, SERVFAIL) is cached briefly as `DnsFailure`
so that a dead resolver costs one timeout per name, not one per message.
Concurrent lookups of one name share a single query.

`cached()` answers synchronously from the cache or raises `NeedLookup`: the
synchronous libraries (pyspf, dkimpy, authheaders) run on that, and the
caller resolves what they asked for and runs them again (see `auth`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

Records = tuple[Any, ...] | None  # None: no such name or no such record type

MIN_TTL, MAX_TTL = 30, 3600  # seconds a positive answer is kept, clamped
NEGATIVE_TTL = 300  # NXDOMAIN and NODATA
FAILURE_TTL = 10  # timeouts and server failures: retried soon
CACHE_SIZE = 10_000  # names kept; the oldest entries go first


class DnsFailure(Exception):
    """The lookup failed for a reason worth retrying later (temperror)."""


class NeedLookup(Exception):  # noqa: N818 (a request, not an error)
    """A synchronous check asked for an answer the cache does not hold yet."""

    def __init__(self, name: str, rdtype: str) -> None:
        super().__init__(f"{name} {rdtype}")
        self.key = (name, rdtype)


def normal_name(name: str | bytes) -> str:
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    return text.rstrip(".").lower()


def parse_address(text: str | None) -> tuple[str, int] | None:
    """DNS_RESOLVER as (host, port): "host", "host:port", "[v6]:port" or a bare v6."""
    if not text:
        return None
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _records(answer: dns.resolver.Answer, rdtype: str) -> tuple[Any, ...]:
    if rdtype == "TXT":
        return tuple(tuple(r.strings) for r in answer)
    if rdtype == "MX":
        return tuple((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer)
    if rdtype == "PTR":
        return tuple(r.target.to_text(omit_final_dot=True) for r in answer)
    return tuple(r.to_text() for r in answer)


class Resolver:
    def __init__(self, address: str | None, timeout: float = 2.0) -> None:
        server = parse_address(address)
        self._resolver = dns.asyncresolver.Resolver(configure=server is None)
        if server is not None:
            self._resolver.nameservers = [server[0]]
            self._resolver.port = server[1]
        self._resolver.lifetime = timeout
        self._cache: collections.OrderedDict[tuple[str, str], tuple[float, Records | DnsFailure]]
        self._cache = collections.OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.queries = 0  # sent to the resolver (the rest came from the cache)

    def cached(self, name: str | bytes, rdtype: str) -> Records:
        """The cached answer; raises DnsFailure (cached failure) or NeedLookup."""
        key = (normal_name(name), rdtype)
        entry = self._cache.get(key)
        if entry is None or entry[0] < time.monotonic():
            raise NeedLookup(*key)
        if isinstance(entry[1], DnsFailure):
            raise entry[1]
        return entry[1]

    def has(self, name: str | bytes, rdtype: str) -> bool:
        """True if the cache holds a current answer (or failure) for name/type."""
        entry = self._cache.get((normal_name(name), rdtype))
        return entry is not None and entry[0] >= time.monotonic()

    async def lookup(self, name: str | bytes, rdtype: str) -> None:
        """Make sure the cache holds an answer (or a failure) for name/type."""
        key = (normal_name(name), rdtype)
        entry = self._cache.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._query(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        await asyncio.shield(pending)

    async def _query(self, key: tuple[str, str]) -> None:
        name, rdtype = key
        self.queries += 1
        value: Records | DnsFailure
        try:
            answer = await self._resolver.resolve(name + ".", rdtype, search=False)
            ttl = min(max(answer.rrset.ttl if answer.rrset else MIN_TTL, MIN_TTL), MAX_TTL)
            value = _records(answer, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            ttl, value = NEGATIVE_TTL, None
        except (dns.exception.DNSException, OSError) as error:
            ttl, value = FAILURE_TTL, DnsFailure(f"{name} {rdtype}: {type(error).__name__}")
        self._store(key, value, ttl)

    def _store(self, key: tuple[str, str], value: Records | DnsFailure, ttl: float) -> None:
        self._cache[key] = (time.monotonic() + ttl, value)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

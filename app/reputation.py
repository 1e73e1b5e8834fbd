"""Reputation stage: the client's address against DNS block- and allow-lists,
the way Postfix's postscreen weighs them.

Lookups start when the client connects (`Reputation.start`), one per zone,
in parallel, through the resolver's cache; the 220 does not wait for them.
The verdict is read at the first RCPT, by which time it is ready or at most
DNSBL_TIMEOUT after the connect: a zone that has not answered by then
counts as not listed (`unchecked`), and so does a zone that answers garbage
(an address outside 127.0.0.0/8, or 127.255.255.x: Spamhaus's "your
resolver is blocked" codes) or lists everything (RFC 5782's 127.0.0.1 test
entry listed); each such problem is logged once per zone.

Zones are written as postscreen's `postscreen_dnsbl_sites`:
`zone[=pattern][*weight]`, the pattern an IPv4 address whose octets may be
`[lo..hi]` or `[a;b;c]` (which return codes count: `zen.spamhaus.org=
127.0.0.[2..11]*2`). Allow-lists subtract their weight. The parsing, the
query names and the scoring are pure functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .clients import client_address
from .model import Finding
from .resolver import DnsFailure, NeedLookup, Resolver

log = logging.getLogger("app.reputation")

Octets = tuple[frozenset[int], ...]
ZONE_ENTRY = re.compile(
    r"(?P<zone>[A-Za-z0-9_.-]+?)(?:=(?P<pattern>[0-9.\[\];]+))?(?:\*(?P<weight>-?\d+(?:\.\d+)?))?"
)
OCTET = re.compile(r"\[[^\]]*\]|[^.]+")
HEALTH_PROBE = "1.0.0.127"  # RFC 5782 3.2: 127.0.0.1 is never listed
# A zone's answer for one client: (the codes that list it, or a problem).
Answer = tuple[tuple[str, ...] | None, str | None]


@dataclasses.dataclass(frozen=True)
class Zone:
    name: str
    weight: float  # added to the score when listed (allow-lists: subtracted)
    pattern: Octets | None  # return codes that count; None: any 127.0.0.0/8 code

    def __str__(self) -> str:
        return f"{self.name}*{abs(self.weight):g}"


def _octet(text: str) -> frozenset[int]:
    """One octet of a pattern: `7`, or `[1;5;7..9]` (numbers and ranges)."""
    values: set[int] = set()
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    for part in inner.split(";"):
        low, _, high = part.partition("..")
        values.update(range(int(low), int(high or low) + 1))
    if not values or not all(0 <= v <= 255 for v in values):
        raise ValueError(text)
    return frozenset(values)


def parse_zones(text: str, allow: bool = False) -> tuple[Zone, ...]:
    """DNSBL_ZONES / DNSWL_ZONES; raises ValueError naming the bad entry."""
    zones = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        match = ZONE_ENTRY.fullmatch(entry)
        if match is None or "." not in match["zone"]:
            raise ValueError(f"bad zone entry {entry!r}")
        pattern = None
        if match["pattern"]:
            octets = OCTET.findall(match["pattern"])
            if len(octets) != 4:
                raise ValueError(f"bad return-code pattern in {entry!r}")
            try:
                pattern = tuple(_octet(octet) for octet in octets)
            except ValueError:
                raise ValueError(f"bad return-code pattern in {entry!r}") from None
        weight = abs(float(match["weight"] or 1))
        zones.append(Zone(match["zone"].lower().strip("."), -weight if allow else weight, pattern))
    return tuple(zones)


def query_name(ip: str, zone: str) -> str | None:
    """`4.3.2.1.zone` for 1.2.3.4, nibbles for IPv6 (RFC 5782); None if not an address."""
    address = client_address(ip)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        reversed_ip = ".".join(reversed(str(address).split(".")))
    else:
        reversed_ip = ".".join(reversed(address.exploded.replace(":", "")))
    return f"{reversed_ip}.{zone}"


def garbage(codes: Iterable[str]) -> str | None:
    """Why these answers cannot be list entries, or None if they can."""
    for code in codes:
        try:
            address = ipaddress.IPv4Address(code)
        except ValueError:
            return f"answered {code!r}"
        if not address.is_loopback:
            return f"answered {code} (not in 127.0.0.0/8)"
        if str(address).startswith("127.255.255."):
            return f"answered {code} (an error code: the resolver is refused or rate-limited)"
    return None


def counts(zone: Zone, codes: Iterable[str]) -> tuple[str, ...]:
    """The return codes that mean "listed" for this zone."""
    if zone.pattern is None:
        return tuple(codes)
    pattern = zone.pattern
    return tuple(
        code
        for code in codes
        if all(int(o) in allowed for o, allowed in zip(code.split("."), pattern, strict=True))
    )


@dataclasses.dataclass(frozen=True)
class Result:
    """The reputation of one client address."""

    score: float = 0.0
    listed: tuple[tuple[str, tuple[str, ...], float], ...] = ()  # (zone, codes, weight)
    unchecked: tuple[str, ...] = ()  # zones that gave no usable answer in time

    def blocklists(self) -> list[str]:
        return [zone for zone, _, weight in self.listed if weight > 0]

    def facts(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "listed": [{"zone": z, "codes": list(c), "weight": w} for z, c, w in self.listed],
            "unchecked": list(self.unchecked),
        }


def score(
    answers: Sequence[tuple[Zone, tuple[str, ...] | None]], unchecked: Sequence[str]
) -> Result:
    """Weigh the zones' answers (None: not listed) into a Result."""
    listed = [
        (zone.name, codes, zone.weight)
        for zone, answer in answers
        if answer and (codes := counts(zone, answer))
    ]
    return Result(sum(w for _, _, w in listed), tuple(listed), tuple(unchecked))


def finding(result: Result, threshold: float) -> Finding | None:
    """The finding recorded with the message: listings, score, unchecked zones."""
    if not result.listed and not result.unchecked:
        return None
    bad = result.score >= threshold
    reason = f"listed by {', '.join(result.blocklists())} (score {result.score:g} >= {threshold:g})"
    return Finding("dnsbl", bad, reason if bad else "", result.facts())


class Reputation:
    """Starts the lookups of a connecting client and weighs the answers."""

    def __init__(
        self, resolver: Resolver, zones: Sequence[Zone], timeout: float, threshold: float
    ) -> None:
        self._resolver = resolver
        self._zones = tuple(zones)
        self._timeout = timeout
        self.threshold = threshold
        self._told: set[tuple[str, str]] = set()  # (zone, problem) already logged

    def start(self, ip: str) -> asyncio.Future[Result] | None:
        """Begin the lookups for `ip`; None when there is nothing to look up.
        A client whose every answer is cached (most: MTAs come back) costs
        no task at all."""
        if not self._zones or not ip:
            return None
        loop = asyncio.get_running_loop()
        if all(self._cached(zone, ip) for zone in self._zones):
            known: asyncio.Future[Result] = loop.create_future()
            known.set_result(self._weigh({zone: self._answer(zone, ip) for zone in self._zones}))
            return known
        return loop.create_task(self.check(ip))

    async def check(self, ip: str) -> Result:
        """Look `ip` up in every zone at once; bounded by the timeout."""
        lookups = {asyncio.ensure_future(self._lookup(zone, ip)): zone for zone in self._zones}
        done, pending = await asyncio.wait(lookups, timeout=self._timeout)
        found: dict[Zone, Answer] = {
            lookups[task]: self._answer(lookups[task], ip) for task in done
        }
        for task in pending:
            task.cancel()
            found[lookups[task]] = (None, f"no answer within {self._timeout:g}s")
        return self._weigh(found)

    def _weigh(self, found: dict[Zone, Answer]) -> Result:
        answers, unchecked = [], []
        for zone, (codes, problem) in found.items():
            if problem is not None:
                self._tell(zone.name, problem)
                unchecked.append(zone.name)
            else:
                answers.append((zone, codes))
        return score(answers, sorted(unchecked))

    def _names(self, zone: Zone, ip: str) -> tuple[str | None, str]:
        return query_name(ip, zone.name), f"{HEALTH_PROBE}.{zone.name}"

    def _cached(self, zone: Zone, ip: str) -> bool:
        name, probe = self._names(zone, ip)
        return name is None or (self._resolver.has(name, "A") and self._resolver.has(probe, "A"))

    async def _lookup(self, zone: Zone, ip: str) -> None:
        name, probe = self._names(zone, ip)
        if name is not None:
            await asyncio.gather(
                self._resolver.lookup(name, "A"), self._resolver.lookup(probe, "A")
            )

    def _answer(self, zone: Zone, ip: str) -> Answer:
        """(codes or None, problem or None) for `ip` in `zone`, from the cache."""
        name, probe = self._names(zone, ip)
        if name is None:
            return None, None
        try:
            codes = self._resolver.cached(name, "A")
            if self._resolver.cached(probe, "A"):
                return None, "lists 127.0.0.1 (its test entry): it answers for everything"
        except (DnsFailure, NeedLookup) as error:
            return None, f"lookup failed ({error})"
        if codes is None:
            return None, None
        problem = garbage(codes)
        return (None, problem) if problem else (tuple(codes), None)

    def _tell(self, zone: str, problem: str) -> None:
        """Log a zone's problem once (the first time it is seen)."""
        key = (zone, problem.partition(" (")[0])
        if key not in self._told and len(self._told) < 1000:
            self._told.add(key)
            log.warning("[reputation] %s %s: counted as not listed", zone, problem)

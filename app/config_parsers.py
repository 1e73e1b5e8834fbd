"""Parsers of setting values: each turns the text the environment gives into
the value Settings holds, or raises ValueError, and carries in `allowed` the
"expected ..." text an error shows (app/config.py names the variable).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Parser = Callable[[str], Any]


def allowed(text: str) -> Callable[[Parser], Parser]:
    """Attach the 'expected ...' text an error shows for this parser."""

    def mark(parse: Parser) -> Parser:
        parse.allowed = text  # type: ignore[attr-defined]
        return parse

    return mark


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Parser:
    noun = "an integer" if kind is int else "a number"

    @allowed(f"{noun} from {low:g} to {high:g}")
    def parse(text: str) -> int | float:
        value = kind(text.strip())
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def integer(low: int, high: int) -> Parser:
    return _bounded(int, low, high)


def number(low: float, high: float) -> Parser:
    return _bounded(float, low, high)


def choice(*choices: str) -> Parser:
    @allowed("one of " + ", ".join(choices))
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


@allowed("true or false (also 1/0, yes/no, on/off)")
def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


@allowed("any text")
def plain_text(text: str) -> str:
    return text.strip()


@allowed("any text, or empty for none")
def optional_text(text: str) -> str | None:
    return text.strip() or None


@allowed("a URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or empty")
def postgres_url(text: str) -> str | None:
    url = text.strip()
    if url and urlsplit(url).scheme not in ("postgresql", "postgres"):  # urlsplit may raise too
        raise ValueError
    return url or None


@allowed("a port from 1 to 65535, or empty for off")
def optional_port(text: str) -> int | None:
    return integer(1, 65535)(text) if text.strip() else None


@allowed("an IP address, ip:port or [ipv6]:port, or empty for the system resolver")
def resolver_address(text: str) -> str | None:
    """DNS_RESOLVER: kept as text, checked here: "ip", "ip:port" or "[ipv6]:port"."""
    text = text.strip()
    if not text:
        return None
    host = text
    if text.count(":") == 1 or text.startswith("["):
        host, _, port = text.removeprefix("[").replace("]", "").rpartition(":")
        integer(1, 65535)(port)
    ipaddress.ip_address(host)  # dnspython takes addresses, not names
    return text


@allowed("comma-separated addresses or CIDR networks (192.0.2.1, 192.0.2.0/24, 2001:db8::/32)")
def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


@allowed("comma-separated zone[=127.0.0.[2..11]][*weight] entries (postscreen's syntax)")
def zones(text: str) -> tuple[Any, ...]:
    if not text.strip():
        return ()  # without importing the resolver: the command line starts fast
    from .reputation import parse_zones

    return parse_zones(text)


@allowed("comma-separated zone[=127.0.[0..255].[1..3]][*weight] entries (weights subtract)")
def allow_zones(text: str) -> tuple[Any, ...]:
    if not text.strip():
        return ()
    from .reputation import parse_zones

    return parse_zones(text, allow=True)


RATE = re.compile(r"[1-9]\d* ?(?:/|per) ?(?:\d+ ?)?(?:second|minute|hour|day|month|year)s?")


@allowed("a rate such as 120/minute, 10/second, 5000/hour; 0 or off for no limit")
def rate(text: str) -> str | None:
    """`limits`' notation, checked here without importing it (app/ratelimit.py does)."""
    value = " ".join(text.strip().lower().split())
    if value in ("0", "off", "none", ""):
        return None
    if not RATE.fullmatch(value):
        raise ValueError
    return value


@allowed("memory:// (this process) or redis://host:port/db (shared by every host)")
def rate_storage(text: str) -> str:
    text = text.strip()
    if text != "memory://" and urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError
    return text


@allowed("rspamd://host:port, spamd://host:port, or empty for none")
def scanner_url(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("rspamd", "spamd") or not parts.hostname or not parts.port:
        raise ValueError
    return text


def mode(what: str) -> Parser:
    return allowed(f"off, record or enforce ({what})")(choice("off", "record", "enforce"))


@allowed("one of debug, info, warning, error")
def logging_level(text: str) -> str:
    return choice("debug", "info", "warning", "error")(text).upper()  # type: ignore[no-any-return]

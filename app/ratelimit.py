"""Rate limits stage: messages per minute, as Postfix's anvil counts them,
on the `limits` library's counters.

Checked at the earliest SMTP step that has the key, and counted when a
message is accepted (`delivered`): what a client names without sending a
message costs nobody else (counted at MAIL and RCPT, a few MAIL commands
a minute locked a sender domain, a mailbox or, from enough IPv6 /64s, all
mail out):
- MAIL: all mail (RATE_GLOBAL), the client's network (an IPv4 /24 or an
  IPv6 /64: RATE_PER_NETWORK), the sender's domain (RATE_PER_SENDER_DOMAIN);
- RCPT: the recipient's domain (RATE_PER_RECIPIENT_DOMAIN) and mailbox
  (RATE_PER_MAILBOX: flood protection, past it `452 4.2.2`);
- every failed command (a 5xx reply): the client's address
  (RATE_ERRORS_PER_IP); past it the address (an IPv6 client: its /64, as
  for the connection limits) is blocked for RATE_BLOCK_SECONDS: `421` at
  connect, and the session is closed.

Counters live in memory (one process) or in Redis (`RATE_LIMIT_STORAGE=
redis://...`: every host and worker shares them). Fixed windows: cheap and
the same in both storages; a client can reach twice a limit across a
window boundary, which the defaults (far above any real MTA) allow for.
With RATE_LIMITS=record nothing is refused: a message over a limit is
stored as junk. A storage that fails (Redis down or slow) refuses nothing:
the failure is logged once a minute and counted, and the storage is left
alone for STORAGE_BACKOFF seconds.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import limits
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from . import metrics, replies
from .clients import client_address, client_key
from .model import Finding
from .tasks import Throttle
from .verdicts import ENFORCE, OFF

log = logging.getLogger("app.ratelimit")

STORAGE_TIMEOUT = 0.5  # seconds one counter update may take before it is skipped
STORAGE_BACKOFF = 5.0  # seconds a failed storage is left alone (nothing counted) before a retry
NETWORK_PREFIX = {4: 24, 6: 64}
# The limits checked at each step: (setting, reply when over it).
AT_MAIL = (
    ("rate_global", replies.RATE_LIMITED),
    ("rate_per_network", replies.RATE_LIMITED),
    ("rate_per_sender_domain", replies.RATE_LIMITED),
)
AT_RCPT = (
    ("rate_per_recipient_domain", replies.RATE_LIMITED),
    ("rate_per_mailbox", replies.MAILBOX_FLOODED),
)


def parse_limit(text: str) -> limits.RateLimitItem | None:
    """`120/minute` (or `120 per minute`); `0` or `off`: no limit. ValueError if bad."""
    text = text.strip().lower()
    if text in ("0", "off", "none", ""):
        return None
    try:
        return limits.parse(text)
    except ValueError:
        raise ValueError(text) from None


@functools.lru_cache(maxsize=4096)  # clients come back; parsing costs more than a counter
def network_of(ip: str) -> str:
    """The client's network: its /24 (IPv4) or /64 (IPv6)."""
    address = client_address(ip)
    if address is None:
        return ip
    prefix = NETWORK_PREFIX[address.version]
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def mail_keys(ip: str, sender: str) -> tuple[str, ...]:
    """The counters' keys at MAIL (AT_MAIL's order)."""
    return ("all", network_of(ip), sender.rpartition("@")[2].lower() or "<>")


def rcpt_keys(recipient: str) -> tuple[str, ...]:
    """The counters' keys of one recipient (AT_RCPT's order)."""
    return (recipient.rpartition("@")[2], recipient)


def storage_uri(setting: str) -> tuple[str, dict[str, Any]]:
    """The `limits` async storage URI and options for RATE_LIMIT_STORAGE."""
    if setting.startswith(("redis://", "rediss://", "unix://")):
        options = {
            "implementation": "redispy",
            "socket_timeout": STORAGE_TIMEOUT,
            "socket_connect_timeout": STORAGE_TIMEOUT,
        }
        return "async+" + setting, options
    return "async+memory://", {}


class RateLimits:
    """The counters of one process (shared through Redis when configured)."""

    def __init__(self, settings: Any) -> None:
        self.mode: str = settings.rate_limits
        uri, options = storage_uri(settings.rate_limit_storage)
        self.storage_name = uri.removeprefix("async+").split("://")[0]
        self._limiter = FixedWindowRateLimiter(storage_from_string(uri, **options))
        self._limits = {
            name: parse_limit(getattr(settings, name) or "0")
            for name, _ in (*AT_MAIL, *AT_RCPT, ("rate_errors_per_ip", ""))
        }
        self._block = limits.RateLimitItemPerSecond(1, max(1, int(settings.rate_block_seconds)))
        self._failures_told = Throttle()
        self._storage_back_at = 0.0  # time.monotonic() before which the storage is not asked
        self._remote = self.storage_name != "memory"  # memory cannot hang: no timer needed

    async def at_mail(self, ip: str, sender: str) -> tuple[str | None, Finding | None]:
        """(refusal, finding) for a MAIL from `ip` with `sender` ("" for <>)."""
        return await self._check(AT_MAIL, mail_keys(ip, sender))

    async def at_rcpt(self, recipient: str) -> tuple[str | None, Finding | None]:
        """(refusal, finding) for an accepted recipient (normalised)."""
        return await self._check(AT_RCPT, rcpt_keys(recipient))

    async def delivered(self, ip: str, sender: str, recipients: Iterable[str]) -> None:
        """Count a message accepted from `ip`: once at MAIL's keys, once per recipient."""
        if self.mode == OFF:
            return
        counted = [zip(AT_MAIL, mail_keys(ip, sender), strict=True)]
        counted += [zip(AT_RCPT, rcpt_keys(r), strict=True) for r in recipients]
        for (name, _), key in itertools.chain.from_iterable(counted):
            item = self._limits[name]
            if item is not None:
                await self._safely(self._limiter.hit, item, name, key)

    async def _check(
        self, checks: tuple[tuple[str, str], ...], keys: tuple[str, ...]
    ) -> tuple[str | None, Finding | None]:
        if self.mode == OFF:
            return None, None
        for (name, reply), key in zip(checks, keys, strict=True):
            item = self._limits[name]
            if item is None or await self._safely(self._limiter.test, item, name, key):
                continue
            setting = name.upper()
            metrics.RATE_LIMITED.labels(setting).inc()
            if self.mode == ENFORCE:
                return reply, None
            facts = {"over": setting, "limit": str(item), "key": key}
            return None, Finding("rate", True, f"over {setting} ({item}) for {key}", facts)
        return None, None

    async def failed_command(self, ip: str) -> bool:
        """Count a failed command of `ip`; True if that blocks it now (enforce only)."""
        item = self._limits["rate_errors_per_ip"]
        if self.mode != ENFORCE or item is None or not ip:
            return False
        client = client_key(ip)
        if await self._safely(self._limiter.hit, item, "errors", client):
            return False
        await self._safely(self._limiter.hit, self._block, "blocked", client)
        metrics.RATE_LIMITED.labels("RATE_ERRORS_PER_IP").inc()
        return True

    async def blocked(self, ip: str) -> bool:
        """True while `ip` is blocked for too many errors."""
        if self.mode != ENFORCE or self._limits["rate_errors_per_ip"] is None or not ip:
            return False
        return not await self._safely(self._limiter.test, self._block, "blocked", client_key(ip))

    async def _safely(self, call: Callable[..., Awaitable[bool]], *args: Any) -> bool:
        """`call(*args)`'s answer, or True (under the limit) if the storage fails
        or is slow; then it is left alone for STORAGE_BACKOFF seconds, so a dead
        or hung Redis costs a session at most STORAGE_TIMEOUT now and then, not
        on every counter."""
        if time.monotonic() < self._storage_back_at:
            return True
        try:
            if not self._remote:
                return await call(*args)
            async with asyncio.timeout(STORAGE_TIMEOUT):
                return await call(*args)
        except Exception as error:
            self._storage_back_at = time.monotonic() + STORAGE_BACKOFF
            metrics.RATE_STORAGE_ERRORS.inc()
            if self._failures_told.due():
                log.warning(
                    "[limits] %s storage failed (%r): not counting, nothing refused",
                    self.storage_name,
                    error,
                )
            return True

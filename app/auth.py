"""Sender authentication on receipt: SPF, DKIM, ARC and DMARC (RFC 8601 results).

The algorithms are the libraries': pyspf (SPF), dkimpy (DKIM signatures and
the ARC chain), dmarc (DMARC record parsing, alignment and policy, on
authheaders' public-suffix list) and authres (the Authentication-Results
header). This module runs the checks of one message on cached DNS; which
signatures to verify is decided in auth_dkim.py, the DMARC policy in
auth_dmarc.py, the stored record in auth_results.py. At most MAX_SIGNATURES
DKIM signatures are verified per message: each costs DNS queries to domains
the sender chooses. The libraries are synchronous and do their own DNS, so
they run here on answers already in the asynchronous resolver's cache: a
lookup they need and the cache lacks raises `NeedLookup`, we resolve it
(awaiting, never blocking the loop) and run the check again. The names
every check needs are resolved up front, in parallel, so the reruns are few
(only SPF's include/a/mx chains).

Every check is bounded by AUTH_TIMEOUT: what is unfinished by then, or what
DNS could not answer, is `temperror`. Nothing here raises or loses mail.
Authentication-Results headers already in the message are never read
(RFC 8601 section 5: one claiming our authserv-id would be forged).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import authres
import dkim
import spf
from authres.arc import ARCAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult

from .auth_dkim import MAX_SIGNATURES, dkim_parts, signature_keys
from .auth_dmarc import (
    DmarcVerdict,
    applied_disposition,
    dmarc_outcome,
    from_domains,
    org_domain,
    strictness,
)
from .auth_results import auth_record
from .model import AuthResult, Envelope
from .parse import parses_slowly
from .policy import normalize_domain
from .resolver import DnsFailure, NeedLookup, Resolver, normal_name

log = logging.getLogger("app.auth")

T = TypeVar("T")
MAX_RERUNS = 30  # SPF allows 10 DNS-querying terms, each maybe two lookups
# Hashing and parsing a bigger message takes milliseconds: done in a thread,
# so the event loop (and every session on it) never waits for it.
OFFLOAD_SIZE = 256 * 1024
# Each DKIM signature and each ARC message signature hashes the whole body
# again, in Python (dkimpy's canonicalisation: about 0.8 s of CPU for 20 MB).
# A thread cannot be cancelled at AUTH_TIMEOUT, so the work itself is bounded:
# at most this many body bytes hashed per message; past it, not checked.
BODY_WORK = 32 * 1024 * 1024
SPF_VERDICT_TTL = 30.0  # seconds an SPF verdict is reused: the shortest DNS cache time
SPF_VERDICTS = 10_000  # (client, sender, HELO) verdicts kept
MAX_ARC_SETS = 50  # RFC 8617 5.1.1.1: a longer chain fails without lookups


class Authenticator:
    def __init__(self, resolver: Resolver, authserv_id: str, timeout: float) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.timeout = timeout
        # SPF verdicts by (client IP, identity, HELO): a sender's mail arrives
        # in runs, and the verdict only changes with DNS (cached as long).
        self.spf_verdicts: collections.OrderedDict[
            tuple[str, str, str], tuple[float, tuple[str, str]]
        ] = collections.OrderedDict()
        # pyspf has one module-level DNS hook; ours answers from the cache.
        spf.DNSLookup = self._spf_lookup

    async def check(self, envelope: Envelope) -> AuthResult:
        """All checks for one message, within the timeout; never raises."""
        state = _Checks(envelope, self)
        try:
            async with asyncio.timeout(self.timeout):
                await state.run()
        except TimeoutError:
            log.info("[auth] checks of %s hit the %.1fs bound", envelope.id, self.timeout)
        except Exception as error:  # a library bug must not cost the message
            log.warning("[auth] checks of %s failed: %r", envelope.id, error)
        return state.result()

    def remember_spf(self, key: tuple[str, str, str], verdict: tuple[str, str]) -> None:
        self.spf_verdicts[key] = (time.monotonic() + SPF_VERDICT_TTL, verdict)
        self.spf_verdicts.move_to_end(key)
        while len(self.spf_verdicts) > SPF_VERDICTS:
            self.spf_verdicts.popitem(last=False)

    async def rerun(self, check: Callable[[], T], offload: bool = False) -> T:
        """Run the synchronous `check` (in a thread if `offload`), resolving what
        it asks for, until it completes."""
        for _ in range(MAX_RERUNS):
            try:
                return await asyncio.to_thread(check) if offload else check()
            except NeedLookup as need:
                await self.resolver.lookup(*need.key)
        raise DnsFailure("too many DNS lookups")

    # Library DNS hooks (synchronous, cache only) ---------------------------------

    def _spf_lookup(
        self, name: str, qtype: str, strict: bool = True, timeout: float = 0
    ) -> list[tuple[tuple[str, str], Any]]:
        if qtype == "SPF":  # RR type 99 is obsolete (RFC 7208 3.1)
            return []
        try:
            records = self.resolver.cached(name, qtype)
        except DnsFailure as error:
            raise spf.TempError(f"DNS {error}") from None
        return [((name, qtype), r) for r in records or ()]

    def dkim_txt(self, name: bytes, timeout: float = 0) -> bytes | None:
        records = self.resolver.cached(name, "TXT")
        return b"".join(records[0]) if records else None

    def dmarc_txt(self, name: str) -> str | None:
        records = self.resolver.cached(name, "TXT")
        texts = [b"".join(r).decode("utf-8", "replace") for r in records or ()]
        dmarc = [t for t in texts if t.startswith("v=DMARC1")]
        return dmarc[0] if len(dmarc) == 1 else None


class _Checks:
    """The checks of one message; fields hold what is known so far."""

    def __init__(self, envelope: Envelope, auth: Authenticator) -> None:
        self.envelope = envelope
        self.auth = auth
        self.message = envelope.as_received
        self.offload = len(self.message) > OFFLOAD_SIZE
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytes | None = None  # dkimpy's body, when dkim_parts could tell it
        self.from_domains: list[str] = []  # of the header From field(s)
        self.spf: authres.SPFAuthenticationResult | None = None
        self.dkim: list[authres.DKIMAuthenticationResult] = []
        self.dkim_pending = 0  # signatures not yet verified
        self.dkim_skipped = 0  # signatures past MAX_SIGNATURES: never verified
        self.arc_sets = 0
        self.has_arc = False
        self.arc_affordable = True  # the chain's body hashing fits in BODY_WORK
        self.arc: ARCAuthenticationResult | None = None
        self.dmarc: DMARCAuthenticationResult | None = None
        self.failed: set[str] = set()  # checks a library could not evaluate: permerror

    async def run(self) -> None:
        if parses_slowly(self.message):  # a header that takes long to read: not on the loop
            await asyncio.to_thread(self._read_header)
        else:
            self._read_header()
        await self._prefetch()
        for stage, name in (
            (self._spf, "spf"),
            (self._dkim, "dkim"),
            (self._arc, "arc"),
            (self._dmarc, "dmarc"),
        ):
            await self._guarded(stage, name)

    def _read_header(self) -> None:
        """The header fields, the signatures to verify, the From domains."""
        end = self.message.find(b"\r\n\r\n")
        parts = dkim_parts(self.message)
        if parts is not None:
            self.headers, self.body = parts
        else:
            try:  # the header only: the body may be megabytes
                self.headers, _ = dkim.rfc822_parse(self.message[: end + 4 if end >= 0 else None])
            except Exception:
                self.headers = []
        fields = [f.lower() for f, _ in self.headers]
        signatures = fields.count(b"dkim-signature")
        body = max(1, len(self.message) - end)
        affordable = max(1, BODY_WORK // body)  # one signature is always checked
        self.dkim_pending = min(signatures, MAX_SIGNATURES, affordable)
        self.dkim_skipped = signatures - self.dkim_pending
        self.arc_sets = fields.count(b"arc-seal")
        self.has_arc = self.arc_sets > 0
        self.arc_affordable = self.arc_sets <= max(0, affordable - self.dkim_pending)
        self.from_domains = from_domains(self.headers)

    async def _guarded(self, stage: Callable[[], Awaitable[None]], name: str) -> None:
        """A library failing on odd input makes that check permerror, not the others."""
        try:
            await stage()
        except DnsFailure:
            pass  # left unset: temperror
        except Exception as error:
            log.debug("[auth] %s of %s: %r", name, self.envelope.id, error)
            self.failed.add(name)

    async def _prefetch(self) -> None:
        wanted = [(name, "TXT") for name in signature_keys(self.headers)]
        for domain in self.from_domains:
            wanted.append(("_dmarc." + domain, "TXT"))
            org = org_domain(domain)
            if org != domain:
                wanted.append(("_dmarc." + org, "TXT"))
        spf_domain = self._spf_identity().rpartition("@")[2]
        if spf_domain:
            wanted.append((spf_domain, "TXT"))
        missing = [(n, t) for n, t in wanted if not self.auth.resolver.has(n, t)]
        if missing:
            await asyncio.gather(*(self.auth.resolver.lookup(n, t) for n, t in missing))

    def _spf_identity(self) -> str:
        # RFC 7208 2.4: the null sender is checked as postmaster@<HELO>.
        return self.envelope.mail_from or (f"postmaster@{self.envelope.helo or ''}")

    async def _verifier(self, kind: type[dkim.DomainSigner]) -> Any:
        """A dkimpy verifier for the message: given the parse we made, or
        parsing it all itself (in a thread if big)."""
        if self.body is not None:
            verifier = kind(None, logger=_QUIET)
            verifier.headers = [[field, value] for field, value in self.headers]
            verifier.body = self.body
            return verifier
        if self.offload:
            return await asyncio.to_thread(kind, self.message, logger=_QUIET)
        return kind(self.message, logger=_QUIET)

    async def _spf(self) -> None:
        ip, helo = self.envelope.remote_ip, self.envelope.helo or ""
        if not ip:
            self.spf = authres.SPFAuthenticationResult(result="none", smtp_mailfrom="")
            return
        identity = self._spf_identity()
        key = (ip, identity, helo)
        known = self.auth.spf_verdicts.get(key)
        if known is not None and known[0] > time.monotonic():
            result, reason = known[1]
        else:
            query = lambda: spf.query(i=ip, s=identity, h=helo).check()  # noqa: E731
            result, _code, reason = await self.auth.rerun(query)
            if result != "temperror":
                self.auth.remember_spf(key, (result, reason))
        self.spf = authres.SPFAuthenticationResult(
            result=result,
            smtp_mailfrom=self.envelope.mail_from or None,
            smtp_helo=None if self.envelope.mail_from else helo,
            reason=reason or None,
        )

    async def _dkim(self) -> None:
        for index in range(self.dkim_pending):
            self.dkim.append(await self._one_signature(index))
            self.dkim_pending -= 1

    async def _one_signature(self, index: int) -> authres.DKIMAuthenticationResult:
        verifier = await self._verifier(dkim.DKIM)
        try:
            ok = await self.auth.rerun(
                lambda: verifier.verify(idx=index, dnsfunc=self.auth.dkim_txt), self.offload
            )
            result = "pass" if ok else self._why_not(verifier)
        except DnsFailure:
            result = "temperror"
        except dkim.ValidationError:  # e.g. the body hash: a fail once the key is known
            result = "fail" if getattr(verifier, "pk", None) is not None else "permerror"
        except dkim.DKIMException:
            result = "permerror"  # a malformed signature (RFC 6376 PERMFAIL)
        fields = verifier.signature_fields or {}
        return authres.DKIMAuthenticationResult(
            result=result,
            header_d=fields.get(b"d", b"").decode("ascii", "replace") or None,
            header_i=fields.get(b"i", b"").decode("ascii", "replace") or None,
            header_s=fields.get(b"s", b"").decode("ascii", "replace") or None,
            header_a=fields.get(b"a", b"").decode("ascii", "replace") or None,
        )

    def _why_not(self, verifier: dkim.DKIM) -> str:
        """permerror when the key is missing or unusable, temperror when DNS failed, else fail."""
        fields = verifier.signature_fields or {}
        name = fields.get(b"s", b"") + b"._domainkey." + fields.get(b"d", b"")
        try:
            records = self.auth.resolver.cached(name, "TXT")
        except DnsFailure:
            return "temperror"
        except NeedLookup:
            return "permerror"  # the signature was unusable before any key lookup
        if not records:
            return "permerror"  # no key (RFC 6376 6.1.2: PERMFAIL)
        # A loaded key and a wrong signature: fail; an unusable key: permerror.
        return "fail" if getattr(verifier, "pk", None) is not None else "permerror"

    async def _arc(self) -> None:
        if not self.has_arc:
            return
        if self.arc_sets > MAX_ARC_SETS:
            self.arc = ARCAuthenticationResult(result="fail", result_comment="chain too long")
            return
        if not self.arc_affordable:
            self.arc = ARCAuthenticationResult(
                result="none", result_comment=f"not checked: {self.arc_sets} sets over this body"
            )
            return
        verifier = await self._verifier(dkim.ARC)
        try:
            cv, _results, comment = await self.auth.rerun(
                lambda: verifier.verify(dnsfunc=self.auth.dkim_txt), self.offload
            )
            result = cv.decode("ascii") if cv else "none"
        except DnsFailure:
            result, comment = "temperror", None
        except dkim.DKIMException as error:
            result, comment = "fail", str(error)
        self.arc = ARCAuthenticationResult(
            result=result, result_comment=None if comment == "success" else comment
        )

    async def _dmarc(self) -> None:
        if not self.from_domains:
            self.dmarc = DMARCAuthenticationResult(result="none")
            return
        verdicts = [
            await self.auth.rerun(lambda d=d: self._dmarc_for(d))  # type: ignore[misc]
            for d in self.from_domains
        ]
        # RFC 7489 6.6.1: with several From domains, the strictest policy applies.
        strictest = min(verdicts, key=strictness)
        self.dmarc = DMARCAuthenticationResult(
            result=strictest.result,
            result_comment=strictest.comment,
            header_from=strictest.domain,
            policy=strictest.applied,
        )

    def _dmarc_for(self, domain: str) -> DmarcVerdict:
        """Policy discovery (the From domain, then its organizational domain),
        alignment and the disposition, on cached DNS answers."""
        organizational = org_domain(domain)
        record = self.auth.dmarc_txt("_dmarc." + domain)
        if record is None and organizational != domain:
            record = self.auth.dmarc_txt("_dmarc." + organizational)
            found_at: str | None = organizational
        else:
            found_at = None
        if record is None:
            return DmarcVerdict("none", domain, None)
        identity = self._spf_identity().rpartition("@")[2]
        spf_domain = None
        if self.spf is not None and self.spf.result == "pass" and identity:
            spf_domain = normalize_domain(identity) or identity
        dkim_domains = tuple(
            normal_name(d.header_d) for d in self.dkim if d.result == "pass" and d.header_d
        )
        result, published, pct = dmarc_outcome(record, domain, found_at, spf_domain, dkim_domains)
        if result != "fail":  # pass: nothing to apply; permerror: no usable policy
            return DmarcVerdict(result, domain, "none" if result == "pass" else None)
        applied = applied_disposition(self.envelope, published, pct)
        comment = f"p={published} pct={pct}" if applied != published else None
        return DmarcVerdict("fail", domain, applied, comment)

    def _missing(self, check: str) -> str:
        """The result of a check that did not complete."""
        return "permerror" if check in self.failed else "temperror"

    def result(self) -> AuthResult:
        spf_result = self.spf or authres.SPFAuthenticationResult(
            result=self._missing("spf"), smtp_mailfrom=self.envelope.mail_from or None
        )
        unfinished = [authres.DKIMAuthenticationResult(result=self._missing("dkim"))]
        dkim_results = self.dkim + unfinished * self.dkim_pending
        if self.dkim_skipped:
            dkim_results.append(
                authres.DKIMAuthenticationResult(
                    result="policy", reason=f"{self.dkim_skipped} more signatures not checked"
                )
            )
        dmarc = self.dmarc or DMARCAuthenticationResult(result=self._missing("dmarc"))
        arc = None
        if self.has_arc:
            arc = self.arc or ARCAuthenticationResult(result=self._missing("arc"))
        return auth_record(self.auth.authserv_id, spf_result, dkim_results, arc, dmarc)


_QUIET = logging.getLogger("app.auth.libraries")
_QUIET.setLevel(logging.CRITICAL)

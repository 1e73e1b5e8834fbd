"""Spam scanner client (optional): rspamd or SpamAssassin scores each message.

`SPAM_SCANNER=rspamd://host:port` posts the message to rspamd's HTTP
`/checkv2` (httpx) with the envelope in its headers (IP, HELO, From, Rcpt,
Queue-Id); `spamd://host:port` asks SpamAssassin's spamd (aiospamc) for
SYMBOLS. The score and the symbols are stored in `verdicts.scanner`; from
SPAM_JUNK_SCORE the message is junk, and with SPAM_CHECKS=enforce from
SPAM_REJECT_SCORE it is refused.

A scanner that is down, slow (past SPAM_TIMEOUT) or answers nonsense never
refuses or delays mail beyond that timeout: the verdict says `unchecked`
with the reason, the failure is logged at most once a minute and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

import aiospamc
import httpx

from . import metrics, replies
from .model import Envelope, Finding
from .tasks import Throttle
from .verdicts import ENFORCE

log = logging.getLogger("app.scanner")

SYMBOLS_KEPT = 50  # symbols stored per message, the highest scores first


def rspamd_result(answer: Any) -> tuple[float, list[str], str]:
    """(score, symbols, action) of a /checkv2 JSON answer; ValueError if it is not one."""
    if not isinstance(answer, dict) or not isinstance(answer.get("score"), (int, float)):
        raise ValueError("no score in rspamd's answer")
    symbols = answer.get("symbols") or {}
    ranked = sorted(
        symbols.items(),
        key=lambda item: -abs(float(item[1].get("score", 0) if isinstance(item[1], dict) else 0)),
    )
    return float(answer["score"]), [name for name, _ in ranked], str(answer.get("action", ""))


class Scanner:
    def __init__(
        self, url: str, timeout: float, junk_score: float, reject_score: float, mode: str
    ) -> None:
        parts = urlsplit(url)
        self.kind = parts.scheme  # "rspamd" or "spamd"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 0
        self._timeout = timeout
        self._junk_score, self._reject_score = junk_score, reject_score
        self._mode = mode
        self._http = httpx.AsyncClient(timeout=timeout) if self.kind == "rspamd" else None
        self._failures_told = Throttle()

    async def scan(self, envelope: Envelope) -> tuple[Finding, str | None]:
        """The scanner's finding on `envelope` and, in enforce mode, the refusal."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                if self.kind == "rspamd":
                    score, symbols, action = await self._rspamd(envelope)
                else:
                    score, symbols, action = await self._spamd(envelope)
                if not math.isfinite(score):
                    raise ValueError(f"score {score} is not a number")
        except Exception as error:
            why = "timeout" if isinstance(error, TimeoutError) else f"{type(error).__name__}"
            return self._unchecked(why, error), None
        metrics.SCANNER.labels("checked").inc()
        facts = {
            "scanner": self.kind,
            "score": round(score, 2),
            "symbols": symbols[:SYMBOLS_KEPT],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if action:
            facts["action"] = action
        junk = score >= self._junk_score
        refusal = None
        if self._mode == ENFORCE and score >= self._reject_score:
            refusal = replies.SPAM_REJECT.format(score=score)
        reason = f"{self.kind} score {score:g} >= {self._junk_score:g}" if junk else ""
        return Finding("scanner", junk, reason, facts), refusal

    def _unchecked(self, why: str, error: BaseException) -> Finding:
        metrics.SCANNER.labels("unchecked").inc()
        if self._failures_told.due():
            log.warning(
                "[scanner] %s at %s:%d gave no verdict (%s: %r): mail is stored unchecked",
                self.kind,
                self._host,
                self._port,
                why,
                error,
            )
        return Finding("scanner", False, "", {"scanner": self.kind, "unchecked": why})

    async def _rspamd(self, envelope: Envelope) -> tuple[float, list[str], str]:
        assert self._http is not None
        headers = [
            ("Queue-Id", str(envelope.id)),
            ("From", envelope.mail_from or "<>"),
            *(("Rcpt", recipient) for recipient in envelope.recipients),
        ]
        if envelope.remote_ip:
            headers.append(("IP", envelope.remote_ip))
        if envelope.helo:
            headers.append(("Helo", "".join(c for c in envelope.helo if 32 < ord(c) < 127)))
        response = await self._http.post(
            f"http://{self._host}:{self._port}/checkv2", content=envelope.raw, headers=headers
        )
        response.raise_for_status()
        return rspamd_result(response.json())

    async def _spamd(self, envelope: Envelope) -> tuple[float, list[str], str]:
        response = await aiospamc.symbols(
            envelope.raw,
            host=self._host,
            port=self._port,
            timeout=aiospamc.Timeout(total=self._timeout),
        )
        spam = response.headers["Spam"]
        body = bytes(response.body).decode("ascii", "replace")
        symbols = [name.strip() for name in body.split(",") if name.strip()]
        return float(spam.score), symbols, ""

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

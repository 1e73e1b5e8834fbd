"""The outcome of one message's checks as it is stored: the
Authentication-Results header (RFC 8601, written by authres) and the
AuthResult record's columns (SPF, the best DKIM result, DMARC).
"""

from __future__ import annotations

from typing import Any

import authres
from authres.arc import ARCAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult

from .model import AuthResult
from .parse import clean_text

# Most trustworthy first: the column shows the best signature's result.
_DKIM_ORDER = ("pass", "fail", "permerror", "temperror", "neutral", "policy", "none")


def auth_record(
    authserv_id: str,
    spf_result: authres.SPFAuthenticationResult,
    dkim_results: list[authres.DKIMAuthenticationResult],
    arc: ARCAuthenticationResult | None,
    dmarc: DMARCAuthenticationResult,
) -> AuthResult:
    """The record of these results; `arc` None: the message has no ARC chain."""
    results: list[Any] = [spf_result]
    results += dkim_results or [authres.DKIMAuthenticationResult(result="none")]
    if arc is not None:
        results.append(arc)
    results.append(dmarc)
    header = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
    # The header quotes what the sender wrote (signature tags, identities):
    # clean, or a NUL in a DKIM tag would make PostgreSQL refuse the row.
    return AuthResult(
        spf=str(spf_result.result),
        dkim=_best([str(d.result) for d in dkim_results]),
        dmarc=str(dmarc.result),
        dmarc_domain=clean_text(getattr(dmarc, "header_from", None)) or None,
        dmarc_policy=getattr(dmarc, "policy", None) or None,
        header=clean_text(header),
    )


def _best(results: list[str]) -> str:
    if not results:
        return "none"
    return min(results, key=lambda r: _DKIM_ORDER.index(r) if r in _DKIM_ORDER else 99)

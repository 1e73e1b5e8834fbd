"""Rows -> the resources mail.tm clients parse (Hydra/JSON-LD or plain JSON),
and what both APIs' shapes share (shapes_mailpit.py has Mailpit's).

Pure functions, tested without a server. Field names, types and empty
values follow mail.tm's documentation: names are "" when absent (never
null), `to` and `html` are lists, dates are ISO 8601 with an offset.
`base` is the URL prefix written into download URLs (API_PUBLIC_URL, or
the request's own origin).
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import sanitize
from .mime import Part

PER_PAGE = 30
INTRO_LENGTH = 120
SNIPPET_LENGTH = 250
SEEN = "\\Seen"
FLAGGED = "\\Flagged"

Row = Mapping[str, Any]


def iso(moment: datetime.datetime | None) -> str | None:
    """mail.tm's date form: 2022-04-01T00:00:00+00:00."""
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds")


def rfc3339(moment: datetime.datetime | None) -> str:
    """Mailpit's date form (milliseconds, UTC): 2022-04-01T00:00:00.000Z."""
    if moment is None:
        moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def arrived(row: Row) -> datetime.datetime | None:
    return row.get("received_at") or row.get("created_at")


# The angle-bracketed address that ends a stored entry ("... <x@evil.com>").
_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>\s*$")


@functools.lru_cache(maxsize=4096)  # pure; senders and recipients repeat
def pair(text: str | None) -> tuple[str, str]:
    """("Name", "address") of a stored header_from/header_to entry; ("", "") if empty.

    The writer stores `Name <address>`; rows of earlier writers have the
    display name unquoted and RFC 2047-decoded, so a name may itself look
    like an address (`support@bank.com <x@evil.com>`, `Bank
    <support@bank.com> <x@evil.com>`), which parseaddr would take as the
    address. The address is therefore the angle-bracketed one that ends the
    entry, the one DMARC checked; everything before it is the name (quotes
    removed). Entries without one (a bare address, `addr (comment)`) are
    parsed as RFC 5322 says.
    """
    if not text:
        return "", ""
    bracketed = _ANGLE_ADDRESS.search(text)
    if bracketed is not None:
        name = text[: bracketed.start()].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = email.utils.unquote(name)
        return name, bracketed.group(1).strip()
    name, address = email.utils.parseaddr(text)
    if not address and "@" in text:
        address = text.strip()
    return name or "", address or ""


def recipients(row: Row) -> list[str]:
    """The To/Cc header entries; rows of older writers have only to_addrs."""
    header_to = row.get("header_to")
    return list(header_to if header_to is not None else (row.get("to_addrs") or []))


def sender(row: Row) -> tuple[str, str]:
    name, address = pair(row.get("header_from"))
    return (name, address) if address else ("", row.get("from_addr") or "")


def is_seen(row: Row) -> bool:
    return SEEN in (row.get("flags") or ())


def attachment_count(row: Row) -> int:
    """How many attachments the writer listed (queries_mail.LIST_COLUMNS counts them
    in the database: the list itself can be megabytes)."""
    return int(row.get("attachment_count") or 0)


_SPACE = re.compile(r"\s+")


def preview_text(row: Row, length: int) -> str:
    """The first `length` characters of the text (or of the HTML's text), one line."""
    preview = row.get("preview") or ""
    if row.get("preview_is_html"):
        preview = sanitize.text(preview)
    text = _SPACE.sub(" ", preview).strip()
    return text[:length]


# mail.tm ----------------------------------------------------------------------------


def ld_keys(ld: bool, context: str, iri: str, kind: str) -> dict[str, str]:
    return {"@context": f"/contexts/{context}", "@id": iri, "@type": kind} if ld else {}


def domain_id(row: Row) -> str:
    """The row's id, or a stable one derived from the domain (Cybertemp has no id column)."""
    return str(row["id"]) if row.get("id") else str(uuid.uuid5(uuid.NAMESPACE_DNS, row["domain"]))


def domain(row: Row, ld: bool) -> dict[str, Any]:
    ident = domain_id(row)
    stamp = iso(row["created_at"])
    return {
        **ld_keys(ld, "Domain", f"/domains/{ident}", "Domain"),
        "id": ident,
        "domain": row["domain"],
        "isActive": row.get("active") is not False,
        "isPrivate": False,
        "createdAt": stamp,
        "updatedAt": stamp,
    }


def account(row: Row, used: int, ld: bool, quota: int) -> dict[str, Any]:
    return {
        **ld_keys(ld, "Account", f"/accounts/{row['id']}", "Account"),
        "id": str(row["id"]),
        "address": row["address"],
        "quota": quota,
        "used": used,
        "isDisabled": False,
        "isDeleted": False,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row.get("updated_at") or row["created_at"]),
    }


def _message_common(row: Row, base: str, account_id: str | None, ld: bool) -> dict[str, Any]:
    name, address = sender(row)
    ident = str(row["id"])
    stamp = iso(arrived(row))
    return {
        **ld_keys(ld, "Message", f"/messages/{ident}", "Message"),
        "id": ident,
        "accountId": f"/accounts/{account_id}" if account_id else "",
        "msgid": row.get("message_id") or "",
        "from": {"name": name, "address": address},
        "to": [{"name": n, "address": a} for n, a in map(pair, recipients(row)) if a],
        "subject": row.get("subject") or "",
        "seen": is_seen(row),
        "isDeleted": False,
        "hasAttachments": attachment_count(row) > 0,
        # Ours (README "Defence"): stored as junk by the inbound checks, and why.
        "junk": bool(row.get("junk")),
        "junkReasons": junk_reasons(row),
        # Ours (README "Codes and links"): one-time codes as shown, the verification link.
        "codes": codes(row),
        "verifyLink": verify_link(row),
        "size": int(row.get("size") or 0),
        "downloadUrl": f"{base}/messages/{ident}/download",
        "sourceUrl": f"{base}/sources/{ident}",
        "createdAt": stamp,
        "updatedAt": stamp,
    }


def message_summary(row: Row, base: str, account_id: str | None, ld: bool) -> dict[str, Any]:
    """A member of GET /messages (and a Mercure Message event)."""
    summary = _message_common(row, base, account_id, ld)
    summary["intro"] = preview_text(row, INTRO_LENGTH)
    return summary


def attachment(message_id: str, index: int, part: Part, base: str) -> dict[str, Any]:
    ident = f"ATTACH{index:06d}"
    return {
        "id": ident,
        "filename": part.filename,
        "contentType": part.content_type,
        "disposition": part.disposition or ("inline" if part.kind == "inline" else "attachment"),
        "transferEncoding": part.transfer_encoding,
        "related": part.related,
        "size": part.size,
        "downloadUrl": f"{base}/messages/{message_id}/attachment/{ident}",
    }


def attachment_index(ident: str) -> int | None:
    match = re.fullmatch(r"ATTACH(\d{6})", ident)
    return int(match.group(1)) if match else None


def message_full(
    row: Row,
    base: str,
    account_id: str | None,
    ld: bool,
    files: Sequence[Part],
    retention_hours: float,
    remote_images: bool = False,
) -> dict[str, Any]:
    """GET /messages/{id}: the list fields plus text, sanitised html, attachments."""
    full = _message_common(row, base, account_id, ld)
    html = sanitize.clean(row.get("html") or "", remote_images)
    when = arrived(row)
    retention = retention_hours > 0 and when is not None
    full.update(
        {
            "cc": [],
            "bcc": [],
            "flagged": FLAGGED in (row.get("flags") or ()),
            "verifications": [],
            "retention": retention,
            "retentionDate": iso(when + datetime.timedelta(hours=retention_hours))
            if retention and when is not None
            else None,
            "text": row.get("body") or "",
            "html": [html] if html else [],
            "attachments": [
                attachment(str(row["id"]), index, part, base) for index, part in enumerate(files, 1)
            ],
        }
    )
    if files:
        full["hasAttachments"] = True
    return full


def source(row: Row, raw: bytes, base: str, ld: bool) -> dict[str, Any]:
    ident = str(row["id"])
    return {
        **ld_keys(ld, "Source", f"/sources/{ident}", "Source"),
        "id": ident,
        "downloadUrl": f"{base}/messages/{ident}/download",
        "data": raw.decode("utf-8", "replace"),
    }


def collection(
    members: list[dict[str, Any]], total: int, page: int, path: str, context: str, ld: bool
) -> Any:
    """A Hydra collection (ld) or a bare JSON array. `hydra:view` only when
    there is more than one page, as API Platform does."""
    if not ld:
        return members
    body: dict[str, Any] = {
        "@context": f"/contexts/{context}",
        "@id": path,
        "@type": "hydra:Collection",
        "hydra:totalItems": total,
        "hydra:member": members,
    }
    last = max(1, math.ceil(total / PER_PAGE))
    if last > 1:
        view = {
            "@id": f"{path}?page={page}",
            "@type": "hydra:PartialCollectionView",
            "hydra:first": f"{path}?page=1",
            "hydra:last": f"{path}?page={last}",
        }
        if page > 1:
            view["hydra:previous"] = f"{path}?page={min(page - 1, last)}"
        if page < last:
            view["hydra:next"] = f"{path}?page={page + 1}"
        body["hydra:view"] = view
    return body


def error(status: int, description: str, ld: bool = True) -> dict[str, Any]:
    """An API Platform error body (also read by clients as detail/message/title)."""
    title = "An error occurred"
    body: dict[str, Any] = {
        "@context": "/contexts/Error",
        "@type": "hydra:Error",
        "hydra:title": title,
        "hydra:description": description,
    }
    if not ld:
        body = {}
    body.update({"title": title, "detail": description, "status": status})
    return body


def unauthorized(message: str) -> dict[str, Any]:
    """LexikJWT's 401 body, as mail.tm sends it."""
    return {"code": 401, "message": message}


def violations(problems: Iterable[tuple[str, str]]) -> dict[str, Any]:
    items = [{"propertyPath": path, "message": text, "code": None} for path, text in problems]
    description = "\n".join(f"{v['propertyPath']}: {v['message']}" for v in items)
    return {
        "@context": "/contexts/ConstraintViolationList",
        "@type": "ConstraintViolationList",
        "hydra:title": "An error occurred",
        "hydra:description": description,
        "title": "An error occurred",
        "detail": description,
        "status": 422,
        "violations": items,
    }


def junk_reasons(row: Row) -> list[str]:
    """Why the inbound checks stored a message as junk (README "Defence")."""
    reasons = row.get("junk_reasons")
    if isinstance(reasons, str):  # jsonb arrives as its JSON text
        reasons = json.loads(reasons)
    return [str(r) for r in reasons] if row.get("junk") and isinstance(reasons, list) else []


def codes(row: Row) -> list[str]:
    """The message's one-time codes ([] for a row stored before they were kept)."""
    return list(row.get("codes") or ())


HTTP = ("http://", "https://")  # the only links shown as links


def verify_link(row: Row) -> str | None:
    """The message's verification link: an http(s) URL, or None."""
    link = row.get("verify_link")
    return link if isinstance(link, str) and link.lower().startswith(HTTP) else None

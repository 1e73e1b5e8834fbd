"""Rows -> the resources clients parse: mail.tm (Hydra/JSON-LD or plain JSON) and Mailpit.

Pure functions, tested without a server. Field names, types and empty
values follow the two reference APIs' documentation: mail.tm names are ""
when absent (never null), `to` and `html` are lists, dates are ISO 8601
with an offset; Mailpit uses Go's field names, `From` is null when absent
and dates are RFC 3339 in UTC. `base` is the URL prefix written into
download URLs (API_PUBLIC_URL, or the request's own origin).
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
    value = row.get("attachments")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return 0
    return len(value) if isinstance(value, list) else 0


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


# Mailpit ------------------------------------------------------------------------------


def contact(text: str | None) -> dict[str, str] | None:
    name, address = pair(text)
    return {"Name": name, "Address": address} if address else None


def _contacts(texts: Iterable[str]) -> list[dict[str, str]]:
    return [c for c in map(contact, texts) if c is not None]


def mailpit_summary(row: Row) -> dict[str, Any]:
    name, address = sender(row)
    return {
        "ID": str(row["id"]),
        "MessageID": (row.get("message_id") or "").strip().strip("<>"),
        "Read": is_seen(row),
        "From": {"Name": name, "Address": address} if address else None,
        "To": _contacts(recipients(row)),
        "Cc": [],
        "Bcc": [],
        "ReplyTo": [],
        "Subject": row.get("subject") or "",
        "Created": rfc3339(arrived(row)),
        "Username": "",
        "Tags": [],
        "Size": int(row.get("size") or 0),
        "Attachments": attachment_count(row),
        "Snippet": preview_text(row, SNIPPET_LENGTH),
    }


def mailpit_page(
    rows: Sequence[Row],
    start: int,
    total: int,
    unread: int,
    matching: int | None = None,
    matching_unread: int | None = None,
) -> dict[str, Any]:
    return {
        "total": total,
        "unread": unread,
        "count": len(rows),
        "messages_count": total if matching is None else matching,
        "messages_unread": unread if matching_unread is None else matching_unread,
        "start": start,
        "tags": [],
        "messages": [mailpit_summary(r) for r in rows],
    }


def mailpit_attachment(part: Part) -> dict[str, Any]:
    return {
        "PartID": part.part_id,
        "FileName": part.filename,
        "ContentType": part.content_type,
        "ContentID": part.content_id,
        "Size": part.size,
    }


def mailpit_message(
    row: Row, header_fields: Mapping[str, list[str]], parts: Sequence[Part]
) -> dict[str, Any]:
    """GET message/{ID}: Mailpit's Message, HTML sanitised."""
    summary = mailpit_summary(row)

    def first(name: str) -> str:
        values = header_fields.get(name) or [""]
        return values[0]

    date = arrived(row)
    if first("Date"):
        try:
            date = email.utils.parsedate_to_datetime(first("Date"))
        except (TypeError, ValueError, IndexError):
            pass
    if date is not None and date.tzinfo is None:
        date = date.replace(tzinfo=datetime.UTC)
    reply_to = email.utils.getaddresses(header_fields.get("Reply-To", []))
    return {
        "ID": summary["ID"],
        "MessageID": summary["MessageID"],
        # Mailpit's Message had Read until v1.15 (clients of that time need it):
        # always true, as opening a message marks it read.
        "Read": True,
        "From": summary["From"],
        "To": summary["To"],
        "Cc": [],
        "Bcc": [],
        "ReplyTo": [{"Name": n, "Address": a} for n, a in reply_to if a],
        "ReturnPath": row.get("from_addr") or "",
        "Subject": summary["Subject"],
        "ListUnsubscribe": {
            "Header": first("List-Unsubscribe"),
            "Links": re.findall(r"<([^>]+)>", first("List-Unsubscribe")),
            "Errors": "",
            "HeaderPost": first("List-Unsubscribe-Post"),
        },
        "Date": rfc3339(date),
        "Tags": [],
        "Username": "",
        "Text": row.get("body") or "",
        "HTML": sanitize.clean(row.get("html") or ""),
        "Size": summary["Size"],
        "Inline": [mailpit_attachment(p) for p in parts if p.kind == "inline"],
        "Attachments": [mailpit_attachment(p) for p in parts if p.kind == "attachment"],
    }


# The page's HTML view ------------------------------------------------------------------

# The document around a message's sanitised HTML (GET /mailpit/{address}/view/{ID}.html):
# readable defaults, links open in a new tab. No script, no external resource.
VIEW_STYLE = (
    "body{margin:0;padding:12px 16px;font:15px/1.5 system-ui,-apple-system,'Segoe UI',"
    "Roboto,sans-serif;color:#1b1b1f;background:#fff;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}"
)


def html_view(row: Row, remote_images: bool = False) -> str:
    """A whole HTML document of the row's sanitised HTML, for a sandboxed iframe."""
    body = sanitize.clean(row.get("html") or "", remote_images)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<base target="_blank"><style>{VIEW_STYLE}</style></head><body>{body}</body></html>'
    )

"""Rows and parsed messages -> Mailpit's resources (server/apiv1, internal/storage).

Pure functions, tested without a server. Go's field names; `From` is
always an address object (empty Name and Address when there is none, as
Mailpit's Metadata); dates are RFC 3339 in UTC; lists are [] when empty,
never null. A row's `tags` are queries_search.TAGS (what a message shows as
tags), sorted as Mailpit sorts tag names (case-insensitively).
"""

from __future__ import annotations

import datetime
import email.header
import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..mimeparams import decode_header_capped
from . import mime, sanitize
from .shapes import (
    Row,
    arrived,
    attachment_count,
    codes,
    is_seen,
    junk_reasons,
    pair,
    preview_text,
    recipients,
    rfc3339,
    sender,
    verify_link,
)

SNIPPET_LENGTH = 250


def sorted_tags(tags: Iterable[str] | None) -> list[str]:
    """Tag names in Mailpit's order (its tags table's NOCASE collation)."""
    return sorted(set(tags or ()), key=lambda tag: (tag.lower(), tag))


def address(name: str, addr: str) -> dict[str, str]:
    return {"Name": name, "Address": addr}


def contact(text: str | None) -> dict[str, str] | None:
    name, addr = pair(text)
    return address(name, addr) if addr else None


def _contacts(texts: Iterable[str]) -> list[dict[str, str]]:
    return [c for c in map(contact, texts) if c is not None]


def with_ours(shape: dict[str, Any], row: Row) -> dict[str, Any]:
    """A Mailpit shape, plus ours where they have something: `JunkReasons`
    on junk mail (junk also shows as the tag `junk`), `Codes` and
    `VerifyLink` on mail with a code or a verification link (README "Codes
    and links"). Other mail keeps Mailpit's exact shape."""
    if row.get("junk"):
        shape["JunkReasons"] = junk_reasons(row)
    found, link = codes(row), verify_link(row)
    if found or link:
        shape["Codes"] = found
        shape["VerifyLink"] = link
    return shape


def summary(row: Row) -> dict[str, Any]:
    """A MessageSummary (the members of messages and search)."""
    return with_ours(_summary(row), row)


def _summary(row: Row) -> dict[str, Any]:
    return {
        "ID": str(row["id"]),
        "MessageID": (row.get("message_id") or "").strip().strip("<>"),
        "Read": is_seen(row),
        "From": address(*sender(row)),
        "To": _contacts(recipients(row)),
        "Cc": [],
        "Bcc": [],
        "ReplyTo": [],
        "Subject": row.get("subject") or "",
        "Created": rfc3339(arrived(row)),
        "Username": "",
        "Tags": sorted_tags(row.get("tags")),
        "Size": int(row.get("size") or 0),
        "Attachments": attachment_count(row),
        "Snippet": preview_text(row, SNIPPET_LENGTH),
    }


def page(
    rows: Sequence[Row],
    start: int,
    counts: Mapping[str, Any],
) -> dict[str, Any]:
    """MessagesSummary: `counts` has total, unread, tags (the mailbox's) and,
    for a search, matching and matching_unread."""
    return {
        "total": counts["total"],
        "unread": counts["unread"],
        "count": len(rows),
        "messages_count": counts.get("matching", counts["total"]),
        "messages_unread": counts.get("matching_unread", counts["unread"]),
        "start": start,
        "tags": sorted_tags(counts.get("tags")),
        "messages": [summary(r) for r in rows],
    }


def attachment(part: mime.Part) -> dict[str, Any]:
    """An Attachment (storage.AttachmentSummary): a nameless part is named by its Content-ID."""
    md5, sha1, sha256 = part.checksums
    return {
        "PartID": part.part_id,
        "FileName": part.filename or part.content_id,
        "ContentType": part.content_type,
        "ContentID": part.content_id,
        "Size": part.size,
        "Checksums": {"MD5": md5, "SHA1": sha1, "SHA256": sha256},
    }


def listed(parts: Sequence[mime.Part], kind: str) -> list[mime.Part]:
    """The parts of one enmime list, breadth first (enmime's BreadthMatchAll),
    that Mailpit lists: those with a file name or a Content-ID."""
    breadth_first = sorted(parts, key=lambda p: p.depth)  # stable: document order per level
    return [p for p in breadth_first if kind in p.lists and (p.filename or p.content_id)]


def inline_parts(parts: Sequence[mime.Part]) -> list[mime.Part]:
    """Mailpit's Inline: the inline-disposition parts, then the other non-text ones."""
    return listed(parts, mime.INLINES) + listed(parts, mime.OTHERS)


def _decoded_name(name: str) -> str:
    if "=?" not in name:
        return name
    try:
        return str(email.header.make_header(decode_header_capped(name)))
    except (ValueError, LookupError):
        return name


def addresses(values: Sequence[str]) -> list[dict[str, str]]:
    """The addresses of header values (names decoded), as Go's AddressList."""
    return [address(_decoded_name(n), a) for n, a in email.utils.getaddresses(values) if a]


def _date(row: Row, header_fields: Mapping[str, list[str]]) -> str:
    """The Date header's moment, else the message's arrival."""
    date = arrived(row)
    value = (header_fields.get("Date") or [""])[0]
    if value:
        try:
            date = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            pass
    if date is not None and date.tzinfo is None:
        date = date.replace(tzinfo=datetime.UTC)
    return rfc3339(date)


def message(row: Row, parsed: mime.Parsed | None, inline_urls: Mapping[str, str]) -> dict[str, Any]:
    """A Message (GET message/{ID}), HTML sanitised: its inline images as
    `cid:` references (Mailpit's), which `inline_urls` may map to URLs."""
    head = parsed.headers if parsed is not None else {}
    parts = parsed.parts if parsed is not None else ()
    base = summary(row)

    def first(name: str) -> str:
        return (head.get(name) or [""])[0]

    unsubscribe = first("List-Unsubscribe")
    full = {
        "ID": base["ID"],
        "MessageID": base["MessageID"],
        # Mailpit's Message had Read until v1.15 (clients of that time need it):
        # always true, as opening a message marks it read.
        "Read": True,
        "From": base["From"],
        "To": addresses(head["To"]) if "To" in head else base["To"],
        "Cc": addresses(head.get("Cc", [])),
        "Bcc": addresses(head.get("Bcc", [])),
        "ReplyTo": addresses(head.get("Reply-To", [])),
        # Mailpit sets Return-Path to the envelope sender as mail arrives.
        "ReturnPath": row.get("from_addr") or first("Return-Path").strip().strip("<>"),
        "Subject": base["Subject"],
        "ListUnsubscribe": {
            "Header": unsubscribe,
            "Links": re.findall(r"<([^>]+)>", unsubscribe),
            "Errors": "",
            "HeaderPost": first("List-Unsubscribe-Post") if unsubscribe else "",
        },
        "Date": _date(row, head),
        "Tags": base["Tags"],
        "Username": "",
        "Text": row.get("body") or "",
        "HTML": sanitize.clean(row.get("html") or "", inline=inline_urls),
        "Size": base["Size"],
        "Inline": [attachment(p) for p in inline_parts(parts)],
        "Attachments": [attachment(p) for p in listed(parts, mime.ATTACHMENTS)],
    }
    return with_ours(full, row)


def cid_map(parts: Sequence[mime.Part], url: str | None) -> dict[str, str]:
    """Content-ID (lower case) -> where its part is shown: `url` + the PartID,
    or (no url) the `cid:` reference itself. Attachments with a Content-ID
    count too, as Mailpit's view links them."""
    found: dict[str, str] = {}
    for part in (*inline_parts(parts), *listed(parts, mime.ATTACHMENTS)):
        if part.content_id:
            key = part.content_id.lower()
            found.setdefault(key, f"{url}{part.part_id}" if url else f"cid:{part.content_id}")
    return found


# The page's HTML view ------------------------------------------------------------------

# The document around a message's sanitised HTML (GET /mailpit/{address}/view/{ID}.html):
# readable defaults, links open in a new tab. No script, no external resource.
VIEW_STYLE = (
    "body{margin:0;padding:12px 16px;font:15px/1.5 system-ui,-apple-system,'Segoe UI',"
    "Roboto,sans-serif;color:#1b1b1f;background:#fff;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}"
)


def html_view(row: Row, remote_images: bool, inline_urls: Mapping[str, str]) -> str:
    """A whole HTML document of the row's sanitised HTML, for a sandboxed iframe."""
    body = sanitize.clean(row.get("html") or "", remote_images, inline_urls)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<base target="_blank"><style>{VIEW_STYLE}</style></head><body>{body}</body></html>'
    )

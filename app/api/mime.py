"""A stored raw message's MIME parts and header fields (pure; stdlib `email`).

Part ids follow the MIME tree: the children of the top multipart are "1",
"2", ..., their children "2.1", "2.2"; a single-part message is "1". The
same walk numbers mail.tm attachments (ATTACH000001, ...) and Mailpit
PartIDs, so a listed id always finds its bytes. An attached message
(message/rfc822) is one attachment, not descended into. Parsing never
raises: a part that cannot be decoded is served as its raw payload.
"""

from __future__ import annotations

import dataclasses
import email
import email.header
import email.message
import email.policy
import re
from collections.abc import Iterator

BODY_TYPES = ("text/plain", "text/html")


@dataclasses.dataclass(frozen=True)
class Part:
    part_id: str
    content_type: str
    charset: str  # declared, for text parts (a clean token, or "")
    filename: str
    disposition: str  # "attachment", "inline" or ""
    content_id: str
    transfer_encoding: str
    related: bool  # inside multipart/related (an inline image of the HTML)
    size: int  # decoded bytes
    kind: str  # "body", "attachment" or "inline"


# A media type: two of RFC 6838's restricted names around one slash.
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
OCTET_STREAM = "application/octet-stream"


def media_type(value: str) -> str:
    """`value` as one clean `type/subtype`, or application/octet-stream.

    The stdlib returns the declared type as written, so a type folded
    across lines (`application/\\r\\n pdf`) keeps its CR LF; sent on as a
    Content-Type that splits the response's header. Whitespace between the
    tokens is the folding itself (RFC 5322 allows it there), so it goes;
    anything else that is not a token means the sender's type is unusable.
    """
    compact = re.sub(r"\s+", "", value).lower()
    return compact if _MEDIA_TYPE.fullmatch(compact) else OCTET_STREAM


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _leaves(
    message: email.message.Message, prefix: str, related: bool
) -> Iterator[tuple[str, email.message.Message, bool]]:
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        inner_related = related or message.get_content_subtype() == "related"
        payload = message.get_payload()
        for index, child in enumerate(payload if isinstance(payload, list) else [], 1):
            if isinstance(child, email.message.Message):
                part_id = f"{prefix}.{index}" if prefix else str(index)
                yield from _leaves(child, part_id, inner_related)
        return
    yield (prefix or "1"), message, related


def _decoded(part: email.message.Message) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
            return payload[0].as_bytes()
        return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # broken encodings: the payload as it stands
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _filename(part: email.message.Message) -> str:
    """The part's file name: RFC 2231 (the stdlib's get_filename) or, as many
    mail programs write it, RFC 2047 encoded words (`=?utf-8?b?...?=`)."""
    try:
        name = part.get_filename()
        if name and "=?" in name:
            name = str(email.header.make_header(email.header.decode_header(name)))
        return _text(name)
    except Exception:
        return ""


_CHARSET = re.compile(r"[a-z0-9][a-z0-9_.:+-]{0,39}")


def _charset(part: email.message.Message) -> str:
    try:
        declared = part.get_content_charset() or ""
    except Exception:
        return ""
    return declared if _CHARSET.fullmatch(declared) else ""


def parts(message: email.message.Message) -> list[Part]:
    """Every leaf part, in order, classified like Mailpit does: the first
    text/plain and text/html without a filename are the body; a part with a
    Content-ID that is not an attachment is inline; every other is an
    attachment."""
    found: list[Part] = []
    seen_body: set[str] = set()
    for part_id, part, related in _leaves(message, "", False):
        content_type = media_type(part.get_content_type())
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        content_id = _text(part.get("content-id", "")).strip().strip("<>")
        if (
            content_type in BODY_TYPES
            and not filename
            and disposition != "attachment"
            and content_type not in seen_body
        ):
            seen_body.add(content_type)
            kind = "body"
        elif content_id and disposition != "attachment":
            kind = "inline"
        else:
            kind = "attachment"
        found.append(
            Part(
                part_id=part_id,
                content_type=content_type,
                charset=_charset(part) if content_type.startswith("text/") else "",
                filename=filename,
                disposition=disposition,
                content_id=content_id,
                transfer_encoding=_text(part.get("content-transfer-encoding", "")).strip().lower()
                or "7bit",
                related=related,
                size=len(_decoded(part)),
                kind=kind,
            )
        )
    return found


def part_content(message: email.message.Message, part_id: str) -> tuple[Part, bytes] | None:
    """(the part, its decoded bytes), or None if there is no such leaf."""
    for (leaf_id, leaf, _related), info in zip(
        _leaves(message, "", False), parts(message), strict=True
    ):
        if leaf_id == part_id:
            return info, _decoded(leaf)
    return None


def download_type(part: Part) -> str:
    """The Content-Type a part is downloaded with: a text part keeps its
    declared charset (else the framework would label it UTF-8)."""
    return f"{part.content_type}; charset={part.charset}" if part.charset else part.content_type


def files(message: email.message.Message) -> list[Part]:
    """Attachments and inline parts (mail.tm lists both, `related` tells them apart)."""
    return [p for p in parts(message) if p.kind != "body"]


def canonical_key(name: str) -> str:
    """A header name as Go's textproto writes it ("message-id" -> "Message-Id")."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


_FOLD = re.compile(r"\r?\n[ \t]*")


def headers(raw: bytes) -> dict[str, list[str]]:
    """Header fields of `raw` as Mailpit's /headers answers them: canonical
    names, each with its values in order, unfolded."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        text = str(value)
        if not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        fields.setdefault(canonical_key(name), []).append(_FOLD.sub(" ", text).strip())
    return fields

"""A stored raw message's MIME parts and header fields (pure; stdlib `email`).

Part ids follow the MIME tree as Mailpit's parser (enmime) numbers them:
the children of the top multipart are "1", "2", ..., their children "2.1",
"2.2"; a message that is not multipart is part "0". The same walk numbers
mail.tm attachments (ATTACH000001, ...) and Mailpit PartIDs, so a listed id
always finds its bytes. An attached message (message/rfc822) is one part,
not descended into. Parsing never raises: a part that cannot be decoded is
served as its raw payload.

Bounded: the parser is fed in chunks and stops once MAX_PARTS parts have
been made, so a message of 150,000 parts costs what one of a thousand
does; only the first MAX_PARTS leaves are listed (`Parsed.truncated` says
there were more), and a part past them is not served. What is left is the
work of one part's bytes, bounded by the message size limit.
"""

from __future__ import annotations

import dataclasses
import email
import email.feedparser
import email.header
import email.message
import email.policy
import hashlib
import itertools
import re
from collections.abc import Iterator

from .. import mimeparams  # noqa: F401  (linear MIME parameter splitting)

BODY_TYPES = ("text/plain", "text/html")
MAX_PARTS = 1000  # leaves listed (and served) per message
FEED_CHUNK = 64 * 1024  # bytes fed to the parser between two counts of its parts
OCTET_STREAM = "application/octet-stream"
# Mailpit's (enmime's) lists: by disposition "attachment" (or an octet
# stream), by disposition "inline", and the other non-text leaves.
ATTACHMENTS, INLINES, OTHERS = "attachments", "inlines", "others"


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
    kind: str  # mail.tm's sorting: "body", "attachment" or "inline"
    lists: tuple[str, ...]  # the enmime lists it is on (ATTACHMENTS, INLINES, OTHERS)
    depth: int  # in the MIME tree (Mailpit lists parts breadth first)
    checksums: tuple[str, str, str] = ("", "", "")  # MD5, SHA1, SHA256 of the decoded bytes


@dataclasses.dataclass(frozen=True)
class Parsed:
    """What the API reads from a raw message: its header fields and leaves."""

    headers: dict[str, list[str]]
    parts: tuple[Part, ...]
    truncated: bool  # more than MAX_PARTS parts: only the first are listed

    def weight(self) -> int:
        """Roughly the bytes it holds (what a cache of them counts)."""
        fields = sum(len(k) + sum(len(v) for v in vs) for k, vs in self.headers.items())
        return 200 + fields + 300 * len(self.parts)


# A media type: two of RFC 6838's restricted names around one slash.
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


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


def parse(raw: bytes, max_parts: int = MAX_PARTS) -> tuple[email.message.Message, bool]:
    """The message tree of `raw` and whether the parse stopped early: once
    the parser has made more than `max_parts` parts, the rest is not read."""
    made = 0

    def counted(*args: object, **kwargs: object) -> email.message.Message:
        nonlocal made
        made += 1
        return email.message.Message(*args, **kwargs)  # type: ignore[arg-type]

    parser = email.feedparser.BytesFeedParser(_factory=counted, policy=email.policy.compat32)
    made = 0  # the parser makes one to try the factory
    stopped = False
    for start in range(0, len(raw), FEED_CHUNK):
        if made > max_parts + 1:  # the root is no part
            stopped = True
            break
        parser.feed(raw[start : start + FEED_CHUNK])
    return parser.close(), stopped


Leaf = tuple[str, email.message.Message, bool]  # part id, the part, inside multipart/related


def _leaves(root: email.message.Message) -> Iterator[Leaf]:
    """The leaves under `root` in document order (iterative: nesting depth
    is the sender's choice)."""
    stack: list[Leaf] = [("", root, False)]
    while stack:
        prefix, message, related = stack.pop()
        if message.get_content_maintype() != "multipart":
            yield (prefix or "0"), message, related
            continue  # a multipart is never a leaf, even one without parts
        inner = related or message.get_content_subtype() == "related"
        payload = message.get_payload()
        children = list(enumerate(payload if isinstance(payload, list) else [], 1))
        for index, child in reversed(children):
            if isinstance(child, email.message.Message):
                stack.append((f"{prefix}.{index}" if prefix else str(index), child, inner))


def _leaves_of(raw: bytes) -> tuple[email.message.Message, list[Leaf], bool]:
    """The root, its first MAX_PARTS leaves, and whether it had more. When
    the parse stopped early its last leaf may be cut short: not listed."""
    root, stopped = parse(raw)
    leaves = list(itertools.islice(_leaves(root), MAX_PARTS + 1))
    if stopped and leaves:
        leaves.pop()
    return root, leaves[:MAX_PARTS], stopped or len(leaves) > MAX_PARTS


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


def enmime_lists(multipart: bool, declared: str, disposition: str) -> tuple[str, ...]:
    """The lists of Mailpit's parser (enmime's envelope) a leaf is on.

    `declared` is the leaf's media type, "" when a part of a multipart
    declares none (enmime keeps it empty; the stdlib would say text/plain).
    In a multipart: ATTACHMENTS holds disposition "attachment" and octet
    streams, INLINES disposition "inline", OTHERS every other leaf that is
    not text/plain or text/html. A message that is not multipart is one
    attachment (or inline part) when it is binary, else the body."""
    if not multipart:
        text = declared in (*BODY_TYPES, "")
        binary = disposition == "attachment" if text else True
        if not binary:
            return ()
        return (INLINES,) if disposition == "inline" else (ATTACHMENTS,)
    lists = []
    if disposition == "attachment" or declared == OCTET_STREAM:
        lists.append(ATTACHMENTS)
    if disposition == "inline":
        lists.append(INLINES)
    if not disposition and declared != OCTET_STREAM and declared not in BODY_TYPES:
        lists.append(OTHERS)
    return tuple(lists)


def _kind(
    content_type: str, filename: str, disposition: str, content_id: str, seen: set[str]
) -> str:
    """mail.tm's sorting: the first text/plain and text/html without a
    filename are the body; a part with a Content-ID that is not an
    attachment is inline; every other is an attachment."""
    if (
        content_type in BODY_TYPES
        and not filename
        and disposition != "attachment"
        and content_type not in seen
    ):
        seen.add(content_type)
        return "body"
    return "inline" if content_id and disposition != "attachment" else "attachment"


def _part(leaf: Leaf, multipart: bool, seen: set[str], data: bytes, sums: bool) -> Part:
    """The Part of a leaf whose decoded bytes are `data`; `sums`: with Mailpit's
    checksums. `seen` carries the body rule from one leaf to the next."""
    part_id, part, related = leaf
    content_type = media_type(part.get_content_type())
    declared = content_type if part.get("content-type") is not None or not multipart else ""
    disposition = (part.get_content_disposition() or "").lower()
    filename = _filename(part)
    content_id = _text(part.get("content-id", "")).strip().strip("<>")
    return Part(
        part_id=part_id,
        content_type=content_type,
        charset=_charset(part) if content_type.startswith("text/") else "",
        filename=filename,
        disposition=disposition,
        content_id=content_id,
        transfer_encoding=_text(part.get("content-transfer-encoding", "")).strip().lower()
        or "7bit",
        related=related,
        size=len(data),
        kind=_kind(content_type, filename, disposition, content_id, seen),
        lists=enmime_lists(multipart, declared, disposition),
        depth=0 if part_id == "0" else part_id.count(".") + 1,
        checksums=_checksums(data) if sums else ("", "", ""),
    )


def _checksums(data: bytes) -> tuple[str, str, str]:
    return (
        hashlib.md5(data).hexdigest(),
        hashlib.sha1(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


def summarize(raw: bytes) -> Parsed:
    """The header fields and the (first MAX_PARTS) leaves of `raw`; never raises
    (a message the stdlib cannot walk lists no part)."""
    try:
        return _summarize(raw)
    except Exception:  # e.g. RecursionError writing out a deeply nested attached message
        return Parsed(headers={}, parts=(), truncated=True)


def _summarize(raw: bytes) -> Parsed:
    root, leaves, truncated = _leaves_of(raw)
    multipart = root.get_content_maintype() == "multipart"
    seen: set[str] = set()
    parts = tuple(_part(leaf, multipart, seen, _decoded(leaf[1]), sums=True) for leaf in leaves)
    return Parsed(headers=_header_fields(root), parts=parts, truncated=truncated)


def part_content(raw: bytes, part_id: str) -> tuple[Part, bytes] | None:
    """(the listed part `part_id`, its decoded bytes), or None if there is none."""
    try:
        return _part_content(raw, part_id)
    except Exception:  # as summarize: what cannot be walked is not there
        return None


def _part_content(raw: bytes, part_id: str) -> tuple[Part, bytes] | None:
    root, leaves, _truncated = _leaves_of(raw)
    multipart = root.get_content_maintype() == "multipart"
    seen: set[str] = set()
    for leaf in leaves:
        data = _decoded(leaf[1]) if leaf[0] == part_id else b""  # only the one asked for
        info = _part(leaf, multipart, seen, data, sums=False)
        if leaf[0] == part_id:
            return info, data
    return None


def download_type(part: Part) -> str:
    """The Content-Type a part is downloaded with: a text part keeps its
    declared charset (else the framework would label it UTF-8)."""
    return f"{part.content_type}; charset={part.charset}" if part.charset else part.content_type


def files(parsed: Parsed) -> list[Part]:
    """Attachments and inline parts (mail.tm lists both, `related` tells them apart)."""
    return [p for p in parsed.parts if p.kind != "body"]


def canonical_key(name: str) -> str:
    """A header name as Go's textproto writes it ("message-id" -> "Message-Id")."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


_FOLD = re.compile(r"\r?\n[ \t]*")


def _header_fields(message: email.message.Message) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        text = str(value)
        if not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        fields.setdefault(canonical_key(name), []).append(_FOLD.sub(" ", text).strip())
    return fields

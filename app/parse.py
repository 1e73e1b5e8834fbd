"""Parse stage: raw message bytes -> ParsedMail. Pure; never raises.

mail-parser first (fast, decodes RFC 2047 and charsets); when it raises, as
it does on some real and corrupted mail, the standard library's compat32
parser; when that fails too, empty fields. The raw bytes are stored apart,
so a bad parse never loses the message. Header values are decoded up to
HEADER_DECODE_MAX characters; `parses_slowly` tells the prepare stage which
messages may take long (they are parsed in a parser process, bounded).
"""

from __future__ import annotations

import dataclasses
import email
import email.header
import email.message
import email.utils
import logging
import re
from typing import Any

import mailparser
import mailparser.utils

from . import codes
from .content import head_of
from .mimeparams import HEADER_DECODE_MAX as HEADER_DECODE_MAX  # re-exported
from .mimeparams import decode_header_capped
from .model import NO_SUBJECT, Attachment, ParsedMail

# mail-parser logs every defect it meets at WARNING/ERROR: noise, and it can
# echo header content into our logs.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

# mail-parser decodes every header value (Subject, attachment names) through
# its module's decode_header: give it the capped one.
mailparser.utils.decode_header = decode_header_capped

log = logging.getLogger("app.parse")


def clean_text(text: Any) -> str:
    """A str PostgreSQL accepts: valid UTF-8 (no lone surrogates), no NUL."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")


def _decoded_size(payload: Any, transfer_encoding: str | None) -> int:
    if not isinstance(payload, str):
        return len(payload or b"")
    if (transfer_encoding or "").lower() == "base64":
        stripped = len(payload) - payload.count("\n") - payload.count("\r")
        return max(0, stripped * 3 // 4 - payload.rstrip().count("=", -2))
    return len(payload.encode("utf-8", "replace"))


# A display name with one of these is quoted, so that reading "name <addr>"
# back gives this address, never one written in the name
# ('"support@bank.com" <x@evil.com>').
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


def _display(name: str, addr: str) -> str:
    """ "Name <address>" (RFC 5322 quoting where needed; UTF-8 kept as it is:
    formataddr refuses UTF-8 addresses)."""
    if not name:
        return addr
    if _SPECIALS.search(name):
        name = '"' + email.utils.quote(name) + '"'
    return f"{name} <{addr}>"


def _address(pairs: Any) -> str:
    return _display(*pairs[0]) if pairs else ""


def _subject(message: email.message.Message, decoded: str) -> str:
    """Cybertemp's placeholder when the header is missing; the text otherwise."""
    return decoded if "subject" in message else NO_SUBJECT


class _Fields(mailparser.MailParser):
    """mail-parser without its `mail` dictionary: every header decoded again
    and turned into JSON-ready values, twice (complete and partial), a fifth
    of the parse; we read the fields we store from the properties."""

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return {}


def _with_mailparser(raw: bytes) -> ParsedMail:
    mail = _Fields.from_bytes(raw)
    subject = mail.subject
    if "\ufffd" in subject:  # mail-parser garbles raw UTF-8 headers
        subject = _header(mail.message, "subject")
    header_from = _address(mail.from_)
    if "\ufffd" in header_from:
        header_from = _header(mail.message, "from")
    attachments = tuple(
        Attachment(
            filename=clean_text(part.get("filename")),
            content_type=clean_text(part.get("mail_content_type")),
            size=_decoded_size(part.get("payload"), part.get("content_transfer_encoding")),
            head=head_of(part.get("payload"), part.get("content_transfer_encoding")),
        )
        for part in mail.attachments
    )
    return ParsedMail(
        subject=clean_text(_subject(mail.message, subject)),
        body=clean_text(mail.text_plain[0] if mail.text_plain else ""),
        html=clean_text(mail.text_html[0] if mail.text_html else ""),
        header_from=clean_text(header_from),
        header_to=tuple(
            clean_text(_display(name, addr))
            for name, addr in (mail.to or []) + (mail.cc or [])
            if addr
        ),
        message_id=clean_text(mail.message_id) or None,
        attachments=attachments,
        parser="mail-parser",
    )


def _header(message: email.message.Message, name: str) -> str:
    """Decoded header text: RFC 2047 encoded words and raw UTF-8 (RFC 6532)."""
    # raw_items(): compat32 turns 8-bit values into Header objects in get().
    values = [value for key, value in message.raw_items() if key.lower() == name]
    if not values:
        return ""
    text = str(values[0])
    if not text.isascii():
        # compat32 keeps 8-bit header bytes as surrogates: get them back as UTF-8.
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    text = re.sub(r"\r?\n(?=[ \t])", "", text)  # unfold
    try:
        return str(email.header.make_header(decode_header_capped(text)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return text


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _with_stdlib(raw: bytes) -> ParsedMail:
    message = email.message_from_bytes(raw)
    body: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        content_type = part.get_content_type()
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            attachments.append(
                Attachment(
                    clean_text(filename),
                    content_type,
                    len(payload or b""),
                    head_of(payload if isinstance(payload, bytes) else b"", None),
                )
            )
        elif content_type == "text/plain" and body is None:
            body = _part_text(part)
        elif content_type == "text/html" and html is None:
            html = _part_text(part)
    recipients = email.utils.getaddresses(
        [str(v) for v in message.get_all("to", []) + message.get_all("cc", [])]
    )
    return ParsedMail(
        subject=clean_text(_subject(message, _header(message, "subject"))),
        body=clean_text(body),
        html=clean_text(html),
        header_from=clean_text(_header(message, "from")),
        header_to=tuple(clean_text(_display(name, addr)) for name, addr in recipients if addr),
        message_id=clean_text(_header(message, "message-id").strip()) or None,
        attachments=tuple(attachments),
        parser="email",
    )


EMPTY = ParsedMail(NO_SUBJECT, "", "", "", (), None, (), "none")

# What the prepare stage may parse on the event loop: parse time grows with
# these (measured worst cases in docs/decisions.md, "Bounded parsing"); a
# message past any of them may take long and is parsed in a parser process.
INLINE_BYTES = 256 * 1024  # the whole message
INLINE_HEADER_BYTES = 8 * 1024  # its header block (one long Received field: 15 ms at 16 KiB)
INLINE_LINES = 5000  # lines (the parser's cost per line dwarfs its cost per byte)
INLINE_HEADER_LINES = 100  # header lines (folded lines count), e.g. Received fields
INLINE_ADDRESS_MARKS = 100  # '@' and ',' in the header: addresses parsed
INLINE_ENCODED_WORDS = 32  # '=?' anywhere: RFC 2047 words decoded (headers, part names)
INLINE_BOUNDARIES = 64  # lines starting '--': MIME parts walked


def parses_slowly(raw: bytes) -> bool:
    """May parsing `raw` take long? A few scans at C speed, no parsing."""
    if len(raw) > INLINE_BYTES:
        return True
    ends = [end for end in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if end >= 0]
    header = raw[: min(ends)] if ends else raw
    return (
        raw.count(b"\n") > INLINE_LINES
        or len(header) > INLINE_HEADER_BYTES
        or header.count(b"\n") > INLINE_HEADER_LINES
        or header.count(b"@") + header.count(b",") > INLINE_ADDRESS_MARKS
        or raw.count(b"=?") > INLINE_ENCODED_WORDS
        or raw.count(b"\n--") > INLINE_BOUNDARIES
    )


def parse(raw: bytes) -> ParsedMail:
    """Best-effort fields of `raw`, with their codes and verification link; never raises."""
    return with_codes(parse_fields(raw))


def parse_fields(raw: bytes) -> ParsedMail:
    """Best-effort fields of `raw`, without codes (see `with_codes`); never raises."""
    for attempt in (_with_mailparser, _with_stdlib):
        try:
            return attempt(raw)
        except (Exception, RecursionError) as error:  # parsers raise anything on bad mail
            log.debug("[parse] %s failed: %s", attempt.__name__, type(error).__name__)
    return EMPTY


# Characters of subject, text and HTML whose codes the prepare stage extracts
# on the event loop: app/codes.py's cost grows with them (hostile shapes about
# 0.12 ms per KB: 8 ms here; 70 ms at its own caps). A message with more
# goes to a parser process, like one that parses slowly.
INLINE_CODE_CHARS = 64_000


def extracts_slowly(parsed: ParsedMail) -> bool:
    """May extracting the codes of `parsed` take long (see INLINE_CODE_CHARS)?"""
    return len(parsed.subject) + len(parsed.body) + len(parsed.html) > INLINE_CODE_CHARS


def with_codes(parsed: ParsedMail) -> ParsedMail:
    """`parsed` with the codes and verification link of its subject, text and
    HTML (app/codes.py: pure, never raises, reads at most its MAX_* characters
    of each part, so a huge body costs no more than a capped one)."""
    found = codes.extract(parsed.subject, parsed.body, parsed.html)
    if not found.codes and found.verify_link is None:
        return parsed
    return dataclasses.replace(parsed, codes=found.codes, verify_link=found.verify_link)

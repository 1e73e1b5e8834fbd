"""Content checks: what a message carries that people get hurt by. Pure.

- Dangerous attachments, found by their bytes (filetype's signatures and
  ours), not by the name the sender chose: executables (PE, ELF, Mach-O),
  scripts (`#!`), Office documents with macros (OLE2 VBA streams, OOXML
  `vbaProject.bin`), HTML and SVG (they run script when opened), and zip
  archives holding any of these (also in a zip in a zip: ARCHIVE_DEPTH).
  A dangerous file name (`.exe`, `.js`, `invoice.pdf.scr`) counts too:
  scripts have no signature.
- Suspicious links: visible text naming one domain while the link goes to
  another (`paypal.com` -> `paypal.com.evil.test`), links to a bare IP
  address, and punycode host names that imitate Latin letters (mixed
  scripts, or Cyrillic/Greek look-alikes only); forms in the HTML.

A dangerous attachment makes the message junk (CONTENT_CHECKS=record) or
refused (enforce); suspicious signs are recorded, and two different kinds
together make it junk. Every input is bounded: HTML and text up to
SCAN_LIMIT characters and LINKS_JUDGED links, RE2 patterns (linear time),
attachments read up to their signature, archives up to ARCHIVE_ENTRIES names.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import itertools
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import filetype
import re2
from filetype.types import archive as archive_types

from .model import Finding, ParsedMail

SCAN_LIMIT = 1024 * 1024  # characters of HTML or text scanned for links
ARCHIVE_ENTRIES = 1000  # names read from one zip archive
HEAD_BYTES = 8192  # decoded bytes of an attachment its signature is read from
HEAD_CHARS = HEAD_BYTES * 4 // 3  # base64 characters that decode to them
ARCHIVE_BYTES = 16 * 1024 * 1024  # a zip archive larger than this is judged by name
ARCHIVE_DEPTH = 3  # zip archives opened one inside another (a zip in a zip: 2)
NESTED_BYTES = 2 * 1024 * 1024  # decoded bytes of a zip inside a zip read to list its names
NESTED_ARCHIVES = 8  # zips inside one attachment's zip opened (a zip bomb's fan-out)
LINKS_KEPT = 20  # suspicious links listed in the verdict
# Links (anchors, and URL host names) judged per message: each costs Python
# work, and 20,000 of them in a 1 MiB message held the event loop for 2.4 s.
LINKS_JUDGED = 1000
DANGEROUS_NAMES = frozenset(
    "exe scr com pif bat cmd vbs vbe js jse wsf wsh hta msi msp ps1 psm1 jar lnk reg cpl "
    "dll sys elf sh apk app dmg iso img vhd docm xlsm pptm dotm xltm html htm xhtml svg".split()
)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MACHO = (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce")
# filetype's matchers for the kinds we act on (all ~100 of them cost ten times more).
SIGNATURES = (archive_types.Exe(), archive_types.Elf(), archive_types.Zip())
# Characters of other scripts that read as Latin letters (IDN homographs).
CONFUSABLE = frozenset("аеорсухіјԁӏѕһԛԝвмнкт" + "οαερνικτυχ")

_options = re2.Options()
_options.case_sensitive = False
_options.dot_nl = True
# On UTF-8 bytes: the wrapper maps every match's offsets back into a str otherwise
# (ten times the cost). A link's text: up to the next tag, after any opening tags.
ANCHOR = re2.compile(
    rb"<a\s[^>]*href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>(?:\s*<[^>]*>)*([^<]{0,300})", _options
)
FORM = re2.compile(rb"<form[\s>]", _options)
URL = re2.compile(rb"https?://([^/\s\"'<>?#]+)", _options)
# On a link's text (at most 300 characters, no spaces): the domain it names.
DOMAIN_TEXT = re.compile(
    r"(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#]\S*)?", re.I
)


def kind_of(data: bytes) -> str | None:
    """What dangerous kind of file `data` is by its bytes, or None."""
    head = data[:8192]
    if head.startswith(OLE2):
        # VBA macros live in streams named _VBA_PROJECT / VBA (UTF-16 directory names).
        if "_VBA_PROJECT".encode("utf-16-le") in data or b"_VBA_PROJECT" in data:
            return "Office document with macros"
        return None
    if head.startswith(MACHO):
        return "executable (Mach-O)"
    if head.startswith(b"#!"):
        return "script"
    guess = filetype.match(head, SIGNATURES)
    if guess is not None:
        if guess.extension in ("exe", "elf", "dll"):
            return f"executable ({guess.mime})"
        if guess.extension == "zip" or data.startswith(b"PK\x03\x04"):
            return archive_kind(data)
        return None
    text = head.lstrip()[:1024].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<script")) or b"<script" in text:
        return "HTML"
    if b"<svg" in text:
        return "SVG image (can run script)"
    return None


def archive_kind(data: bytes, depth: int = 1, room: list[int] | None = None) -> str | None:
    """A zip (or OOXML) archive's danger: macros, or a dangerous file inside,
    also inside a zip inside it (ARCHIVE_DEPTH levels; at most NESTED_ARCHIVES
    inner zips, NESTED_BYTES each: `room` counts them down)."""
    room = [NESTED_ARCHIVES] if room is None else room
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [i for i in archive.infolist()[:ARCHIVE_ENTRIES] if not i.is_dir()]
            if any(i.filename.lower().endswith("vbaproject.bin") for i in entries):
                return "Office document with macros"
            for info in entries:
                if name_kind(info.filename):
                    return f"archive holding {name_kind(info.filename)} ({info.filename[:100]})"
            for info in entries:
                inner = _member_kind(archive, info, depth, room)
                if inner:
                    return f"archive holding {inner} ({info.filename[:100]})"
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError, EOFError):
        return None  # not an archive we can read (encrypted, broken): judged by name only
    return None


def _member_kind(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, depth: int, room: list[int]
) -> str | None:
    """The danger of one file in an archive, by its bytes; a zip in it is opened."""
    with archive.open(info) as member:
        head = member.read(HEAD_BYTES)
        if not head.startswith(b"PK\x03\x04"):
            return kind_of(head)
        if depth >= ARCHIVE_DEPTH or room[0] <= 0:
            return None
        room[0] -= 1
        return archive_kind(head + member.read(NESTED_BYTES - HEAD_BYTES), depth + 1, room)


def name_kind(name: str) -> str | None:
    """The danger a file name announces (its last extension), or None."""
    extension = name.lower().rstrip(". ").rpartition(".")[2]
    return f"a .{extension} file" if extension in DANGEROUS_NAMES and "." in name else None


def head_of(payload: Any, transfer_encoding: str | None) -> bytes:
    """The first HEAD_BYTES decoded bytes of an attachment's payload (as the
    parser holds it: base64 text, or bytes), or all of a zip archive (up to
    ARCHIVE_BYTES) so its entries can be listed."""
    if isinstance(payload, str):
        if (transfer_encoding or "").lower() != "base64":
            return payload[:HEAD_BYTES].encode("utf-8", "replace")
        compact = "".join(payload[: HEAD_CHARS * 2].split())[:HEAD_CHARS]
        head = _b64(compact[: len(compact) // 4 * 4])
        if head.startswith(b"PK\x03\x04") and len(payload) <= ARCHIVE_BYTES * 4 // 3 + 4096:
            return _b64("".join(payload.split()))
        return head
    data = bytes(payload or b"")
    return data if data.startswith(b"PK\x03\x04") else data[:HEAD_BYTES]


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text)
    except ValueError:
        return b""


def dangerous_attachments(parsed: ParsedMail) -> list[dict[str, str]]:
    """One entry per dangerous attachment: its name and why."""
    found = []
    for attachment in parsed.attachments:
        why = kind_of(attachment.head) or name_kind(attachment.filename)
        if why:
            found.append({"filename": attachment.filename[:255], "kind": why})
    return found


def registrable_under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain) or domain.endswith("." + host)


def lookalike(host: str) -> bool:
    """A punycode label that imitates Latin letters: mixed scripts, or only look-alikes."""
    for label in host.split("."):
        if not label.startswith("xn--"):
            continue
        try:
            text = label.encode("ascii").decode("idna")
        except UnicodeError:
            return True  # a broken punycode label is not a real name
        scripts = {unicodedata.name(c, "?").split(" ")[0] for c in text if c.isalpha()}
        if len(scripts & {"LATIN", "CYRILLIC", "GREEK"}) > 1:
            return True
        if all(c in CONFUSABLE or not c.isalpha() for c in text):
            return True
    return False


def host_of(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


def _is_ip(host: str) -> bool:
    if not host or not (host[0].isdigit() or host[0] == "[" or ":" in host):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def link_signs(html: str, text: str) -> dict[str, list[str]]:
    """Suspicious signs in the HTML and text: deceptive, IP-literal and
    look-alike links, forms. Lists of examples, by kind."""
    html_bytes = html[:SCAN_LIMIT].encode("utf-8", "replace")
    text_bytes = text[:SCAN_LIMIT].encode("utf-8", "replace")
    signs: dict[str, list[str]] = {}

    def add(kind: str, example: str) -> None:
        examples = signs.setdefault(kind, [])
        if len(examples) < LINKS_KEPT and example not in examples:
            examples.append(example[:300])

    for anchor in itertools.islice(ANCHOR.finditer(html_bytes), LINKS_JUDGED):
        href, inner = anchor.group(1), anchor.group(2)
        host = host_of(href.decode("utf-8", "replace"))
        shown = inner.decode("utf-8", "replace").strip()
        named = DOMAIN_TEXT.fullmatch(shown) if "." in shown and " " not in shown else None
        if host and named and not registrable_under(host, named.group(1).lower()):
            add("deceptive_links", f"{shown} -> {host}")
    for host in set(itertools.islice(_hosts(html_bytes, text_bytes), LINKS_JUDGED)):
        if _is_ip(host.rpartition("@")[2].split(":")[0]):
            add("ip_links", host)
        elif lookalike(host.split(":")[0]):
            add("lookalike_links", host)
    if html_bytes and FORM.search(html_bytes):
        add("forms", "a form in the HTML")
    return signs


def _hosts(*texts: bytes) -> Iterable[str]:
    for text in texts:
        if text:
            for found in URL.finditer(text):
                yield found.group(1).decode("utf-8", "replace").lower()


def judge(parsed: ParsedMail, mode: str) -> tuple[Finding | None, str | None]:
    """The content finding of a message and, with mode enforce, why to refuse it."""
    facts: dict[str, Any] = {}
    dangerous = dangerous_attachments(parsed)
    if dangerous:
        facts["attachments"] = dangerous
    signs = link_signs(parsed.html, parsed.body)
    facts.update(signs)
    if not facts:
        return None, None
    reasons = [f"{a['filename'] or 'an attachment'} is {a['kind']}" for a in dangerous]
    if len(signs) >= 2:
        reasons.append("suspicious: " + ", ".join(kind.replace("_", " ") for kind in signs))
    # The reply names the kind in our words, never the sender's file names.
    first = dangerous[0]["kind"].partition(" (")[0] if dangerous else ""
    refusal = f"an attachment is {first}" if dangerous and mode == "enforce" else None
    return Finding("content", bool(reasons), "; ".join(reasons), facts), refusal

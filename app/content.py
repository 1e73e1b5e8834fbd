"""Content checks: what a message carries that people get hurt by. Pure.

- Dangerous attachments, found by their bytes (filetype's signatures and
  ours), not by the name the sender chose: executables (PE, ELF, Mach-O),
  scripts (`#!`), Office documents with macros (OLE2 VBA streams, OOXML
  `vbaProject.bin`), HTML and SVG (they run script when opened), and zip
  archives holding any of these (one level down). A dangerous file name
  (`.exe`, `.js`, `invoice.pdf.scr`) counts too: scripts have no signature.
- Suspicious links: visible text naming one domain while the link goes to
  another (`paypal.com` -> `paypal.com.evil.test`), links to a bare IP
  address, and punycode host names that imitate Latin letters (mixed
  scripts, or Cyrillic/Greek look-alikes only); forms in the HTML.

A dangerous attachment makes the message junk (CONTENT_CHECKS=record) or
refused (enforce); suspicious signs are recorded, and two different kinds
together make it junk. Every input is bounded: HTML and text up to
SCAN_LIMIT characters, RE2 patterns (linear time), attachments read up to
their signature, archives up to ARCHIVE_ENTRIES names.
"""

from __future__ import annotations

import email
import email.policy
import io
import ipaddress
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import filetype
import re2

from .model import Finding, ParsedMail

SCAN_LIMIT = 1024 * 1024  # characters of HTML or text scanned for links
ARCHIVE_ENTRIES = 1000  # names read from one zip archive
LINKS_KEPT = 20  # suspicious links listed in the verdict
DANGEROUS_NAMES = frozenset(
    "exe scr com pif bat cmd vbs vbe js jse wsf wsh hta msi msp ps1 psm1 jar lnk reg cpl "
    "dll sys elf sh apk app dmg iso img vhd docm xlsm pptm dotm xltm html htm xhtml svg".split()
)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MACHO = (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce")
# Characters of other scripts that read as Latin letters (IDN homographs).
CONFUSABLE = frozenset("аеорсухіјԁӏѕһԛԝвмнкт" + "οαερνικτυχ")

_options = re2.Options()
_options.case_sensitive = False
_options.dot_nl = True
ANCHOR = re2.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>(.{0,500}?)</a\s*>", _options)
FORM = re2.compile(r"<form[\s>]", _options)
URL = re2.compile(r"https?://([^/\s\"'<>?#]+)", _options)
DOMAIN_TEXT = re2.compile(
    r"^(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#].*)?$", _options
)
TAG = re2.compile(r"<[^>]*>")


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
    guess = filetype.guess(head)
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


def archive_kind(data: bytes) -> str | None:
    """A zip (or OOXML) archive's danger: macros, or a dangerous file inside."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [info.filename for info in archive.infolist()[:ARCHIVE_ENTRIES]]
            if any(name.lower().endswith("vbaproject.bin") for name in names):
                return "Office document with macros"
            for name in names:
                if name_kind(name):
                    return f"archive holding {name_kind(name)} ({name[:100]})"
            for info in archive.infolist()[:ARCHIVE_ENTRIES]:
                if info.file_size <= 16 * 1024 * 1024 and not info.is_dir():
                    with archive.open(info) as member:
                        inner = kind_of(member.read(8192)) if not name_kind(info.filename) else None
                    if inner and not inner.startswith("archive"):
                        return f"archive holding {inner} ({info.filename[:100]})"
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError, EOFError):
        return None  # not an archive we can read (encrypted, broken): judged by name only
    return None


def name_kind(name: str) -> str | None:
    """The danger a file name announces (its last extension), or None."""
    extension = name.lower().rstrip(". ").rpartition(".")[2]
    return f"a .{extension} file" if extension in DANGEROUS_NAMES and "." in name else None


def attachments(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """(file name, decoded bytes) of each attachment-like part of `raw`."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        if part.is_multipart():
            continue
        name = part.get_filename() or ""
        disposition = (part.get("Content-Disposition") or "").lower()
        if not name and "attachment" not in disposition and part.get_content_maintype() == "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield str(name)[:255], payload


def dangerous_attachments(raw: bytes) -> list[dict[str, str]]:
    """One entry per dangerous attachment: its name and why."""
    found = []
    for name, data in attachments(raw):
        why = kind_of(data) or name_kind(name)
        if why:
            found.append({"filename": name, "kind": why})
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
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def link_signs(html: str, text: str) -> dict[str, list[str]]:
    """Suspicious signs in the HTML and text: deceptive, IP-literal and
    look-alike links, forms. Lists of examples, by kind."""
    html, text = html[:SCAN_LIMIT], text[:SCAN_LIMIT]
    signs: dict[str, list[str]] = {}

    def add(kind: str, example: str) -> None:
        examples = signs.setdefault(kind, [])
        if len(examples) < LINKS_KEPT and example not in examples:
            examples.append(example[:300])

    for href, inner in ANCHOR.findall(html) if html else ():
        host = host_of(href)
        shown = " ".join(TAG.sub(" ", inner).split())
        named = DOMAIN_TEXT.match(shown)
        if host and named and not registrable_under(host, named.group(1).lower()):
            add("deceptive_links", f"{shown} -> {host}")
    for host in _hosts(html, text):
        if _is_ip(host.rpartition("@")[2].split(":")[0]):
            add("ip_links", host)
        elif lookalike(host.split(":")[0]):
            add("lookalike_links", host)
    if html and FORM.search(html):
        add("forms", "a form in the HTML")
    return signs


def _hosts(*texts: str) -> Iterable[str]:
    for text in texts:
        if text:
            yield from (host.lower() for host in URL.findall(text))


def judge(parsed: ParsedMail, raw: bytes, mode: str) -> tuple[Finding | None, str | None]:
    """The content finding of a message and, with mode enforce, why to refuse it."""
    facts: dict[str, Any] = {}
    dangerous = dangerous_attachments(raw) if parsed.attachments else []
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

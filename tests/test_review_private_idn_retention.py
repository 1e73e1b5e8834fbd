"""Review finding (issue 21 item 6): `retention --include-existing` deleted
the pre-switch mail of a private address at an IDN domain.

The website listed `vip@例え.jp` in private_email, and Cybertemp had stored
that user's mail under the same spelling. The lists, the API and the writer
normalise an address to one form (policy.normalize_address: case, spaces,
final dot, the domain in punycode), but retention compared the stored
`mailbox_owner` with that form only, in SQL, and `vip@例え.jp` is not
`vip@xn--r8jz45g.jp`: the user's mail was expired. Now every SQL comparison
of stored addresses (retention's and the writer's private_email stamp)
goes through the same fold and the spellings of the one normal form.
"""

from __future__ import annotations

import smtplib

import httpx

from app import db
from app.policy import address_spellings, normalize_address

from . import cybertemp
from .api_helpers import ApiServer
from .cybertemp import app
from .helpers import eventually, query

UNICODE, PUNYCODE = "vip@例え.jp", "vip@xn--r8jz45g.jp"
STRANGER = "stranger@例え.jp"  # the same domain, not private: its old mail goes


def owners(url: str) -> dict[str, int]:
    rows = query(url, "SELECT mailbox_owner, count(*) FROM emails GROUP BY 1")
    return {r[0]: r[1] for r in rows}


def test_private_idn_mail_is_kept_by_include_existing(database_url, tmp_path, quiet_dns):
    cybertemp.build(database_url, rows_per_owner=4)
    query(database_url, "INSERT INTO domains (domain) VALUES ('例え.jp')")
    query(database_url, "INSERT INTO private_email (email) VALUES ($1)", f" {UNICODE.upper()}.")
    query(  # mail Cybertemp stored for them, two days ago, as it spelled the recipient
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, to_addrs, created_at) "
        "SELECT owner, 'old', '', 'a@sender.test', ARRAY[owner], now() - interval '2 days' "
        "FROM unnest($1::text[]) AS owner",
        [UNICODE, UNICODE, STRANGER],
    )
    assert app("init-db", database_url=database_url).returncode == 0
    server = cybertemp.server(database_url, tmp_path / "spool", quiet_dns.address).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("sender.test")
        client.sendmail("a@sender.test", [UNICODE], b"Subject: new\r\n\r\nx\r\n", ["SMTPUTF8"])
    eventually(lambda: owners(database_url).get(PUNYCODE) == 1)  # stored as the writer stores
    server.stop()
    query(  # ... and make it old too
        database_url,
        "UPDATE emails SET received_at = now() - interval '2 days', "
        "created_at = now() - interval '2 days' WHERE mailbox_owner = $1",
        PUNYCODE,
    )

    done = app("retention", "--include-existing", database_url=database_url, retention_hours="24")
    assert done.returncode == 0, done.stderr
    assert "private_email: 3 addresses" in done.stdout, done.stdout
    left = owners(database_url)
    kept = [left.get(owner) for owner in (UNICODE, PUNYCODE, STRANGER, "vip@example.com")]
    assert kept == [2, 1, None, 4], left

    api = ApiServer(database_url, str(tmp_path / "data")).start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as anyone:
            for spelling in (UNICODE, PUNYCODE, "VIP@例え.JP."):
                listed = anyone.get(f"/mailpit/{spelling}/api/v1/messages")
                assert listed.status_code == 401, (spelling, listed.status_code)
                claim = anyone.post("/accounts", json={"address": spelling, "password": "x" * 8})
                assert claim.status_code == 422, (spelling, claim.text)
            assert anyone.get(f"/mailpit/{STRANGER}/api/v1/messages").status_code == 200
    finally:
        api.kill()


# Spellings of one address as websites and Cybertemp wrote them.
SPELLINGS = [
    "vip@例え.jp",
    " VIP@例え.JP. ",
    "vip@例え.jp\r\n",
    "vip@xn--r8jz45g.jp",
    "Vip@XN--R8JZ45G.JP.",
    "\tchief@example.com ",
    "Chief@Example.COM.",
]


def test_sql_matches_every_spelling_the_normal_form_accepts(database_url):
    """What SQL compares (db.folded of the stored text, against
    policy.address_spellings of the normal form) agrees with
    policy.normalize_address on each spelling, in PostgreSQL itself."""
    for text in SPELLINGS:
        spellings = address_spellings([normalize_address(text)])
        [(matched,)] = query(
            database_url, f"SELECT {db.folded('$1::text')} = ANY($2::text[])", text, spellings
        )
        assert matched, (text, spellings)
    assert address_spellings(["vip@xn--r8jz45g.jp", "a@example.com", "b@xn--.example"]) == [
        "a@example.com",
        "b@xn--.example",  # not a valid IDN: only itself
        "vip@xn--r8jz45g.jp",
        "vip@例え.jp",
    ]

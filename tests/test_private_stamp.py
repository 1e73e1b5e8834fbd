"""private_email.last_updated_at is set for every spelling the lists accept.

Found in review: the SMTP side normalised private_email two ways.

The API reads private_email through policy.build_private (case, spaces,
trailing dot, IDN in punycode), "exactly as the SMTP service does". The
SMTP service's retention does the same, but its writer does not: the batch
statement (app/db.py, the `private` step) marks a row with
`UPDATE private_email SET last_updated_at = now() WHERE lower(email) =
ANY(owners)`. A row the website wrote as ` Boss@example.com`, `vip@例え.jp`
or `chief@example.com.` is private for the API and for retention, yet
never gets `last_updated_at` when its mail commits (DESIGN.md:
"`last_updated_at` is set when the mail commits"). The website, which
reads that column to show "new mail", never sees it.

The test lists each spelling, sends mail to the address, and waits for
`last_updated_at` to be set, as it is for a row written in lower case.
"""

from __future__ import annotations

import pytest

from . import api_fixtures
from .api_helpers import mail, send
from .helpers import eventually, query

make_stack = api_fixtures.make_stack  # the fixture, by name

SPELLINGS = [
    ("plain@example.com", "plain@example.com"),  # the control: lower case, as stored
    (" Boss@Example.com", "boss@example.com"),
    ("vip@例え.jp", "vip@xn--r8jz45g.jp"),
    ("chief@example.com.", "chief@example.com"),
]


@pytest.mark.parametrize("listed,rcpt", SPELLINGS)
def test_mail_to_a_private_address_marks_its_row(make_stack, listed, rcpt):
    stack = make_stack(private_email=(listed,))
    send(stack.smtp.port, [rcpt], mail(rcpt, subject="for a user of the website"))
    eventually(
        lambda: query(stack.database_url, "SELECT 1 FROM emails WHERE mailbox_owner = $1", rcpt)
    )
    with stack.client() as anyone:  # the API counts the row as private
        assert anyone.get(f"/mailpit/{rcpt}/api/v1/messages").status_code == 401
    [row] = query(
        stack.database_url, "SELECT last_updated_at FROM private_email WHERE email = $1", listed
    )
    assert row["last_updated_at"] is not None, (
        f"mail to {rcpt} committed, but its private_email row {listed!r} was not marked"
    )

"""The pure parts of webhooks: retry pauses, who is subscribed, the payload,
the signature headers, the list line, event names."""

from __future__ import annotations

import datetime
import json
import uuid

from standardwebhooks import Webhook

from app import cli_webhooks, codes, webhooks_outbox, webhooks_sender
from app.model import Envelope, ParsedMail, Prepared


def test_retry_delay_doubles_up_to_the_longest():
    pauses = [webhooks_sender.retry_delay(n, 5, 60) for n in range(1, 8)]
    for pause, expected in zip(pauses, [5, 10, 20, 40, 60, 60, 60], strict=True):
        assert expected * 0.9 <= pause <= expected * 1.1
    assert webhooks_sender.retry_delay(10_000, 5, 60) <= 66  # no overflow


def test_subscribed():
    nobody = webhooks_outbox.Subscribed.of([])
    assert not nobody and not nobody.wants("a@example.com")
    some = webhooks_outbox.Subscribed.of(["a@example.com"])
    assert some.wants("a@example.com") and not some.wants("b@example.com")
    assert webhooks_outbox.Subscribed.of([None, "a@example.com"]).wants("b@example.com")


def prepared(subject: str = "Your code") -> Prepared:
    envelope = Envelope.new(
        "alice@sender.test",
        ("a@example.com", "b@example.com"),
        b"Subject: x\r\n\r\nbody\r\n",
        "192.0.2.1",
        "client.test",
    )
    parsed = ParsedMail(
        subject=subject,
        body="Your code is 482913.",
        html="",
        header_from="Alice <alice@sender.test>",
        header_to=("a@example.com",),
        message_id="<1@sender.test>",
        attachments=(),
        parser="email",
    )
    return Prepared(envelope, parsed, None)


def test_statement_only_for_subscribed_rows():
    outbox = webhooks_outbox.Outbox()
    batch = [prepared()]
    assert outbox.statement(batch) is not None  # endpoints not read yet: every row
    outbox.update([])
    assert outbox.statement(batch) is None  # nobody subscribed: nothing built
    outbox.update(["b@example.com"])
    statement = outbox.statement(batch)
    assert statement is not None
    ids, owners, bodies, spellings = statement[1]
    assert owners == ["b@example.com"] and ids == [batch[0].envelope.row_ids[1]]
    assert spellings == ["b@example.com"]
    body = json.loads(bodies[0])
    assert body["type"] == "message.received"
    assert body["data"]["id"] == str(ids[0]) and body["data"]["address"] == "b@example.com"
    found = codes.extract("Your code", "Your code is 482913.", "")
    assert body["data"]["codes"] == list(found.codes)


def test_signed_headers_verify():
    secret = webhooks_sender.new_secret()
    assert secret.startswith("whsec_")
    body = '{"type":"message.received"}'
    now = datetime.datetime.now(datetime.UTC).timestamp()
    headers = webhooks_sender.signed_headers(secret, "msg_1", body, now)
    assert Webhook(secret).verify(body, headers) == {"type": "message.received"}


def test_webhook_id_is_stable():
    email = uuid.uuid4()
    heads = [
        webhooks_sender.db_webhooks.Head(n, 7, "u", "s", email, "{}", n, datetime.datetime.now())
        for n in (1, 2)
    ]
    assert webhooks_sender.webhook_id(heads[0]) == webhooks_sender.webhook_id(heads[1])
    assert webhooks_sender.webhook_id(heads[0]) == f"msg_{email.hex}_7"


def test_event_types_and_list_line():
    assert cli_webhooks.event_types("message.received, message.received") == ["message.received"]
    assert cli_webhooks.event_types("message.deleted") is None
    row = {
        "id": 3,
        "disabled_at": None,
        "disabled_reason": None,
        "failures": 2,
        "address": None,
        "url": "https://h.example/x",
        "events": ["message.received"],
        "delivered": 5,
        "pending": 1,
        "given_up": 0,
        "created_by": "operator",
        "last_success_at": None,
        "last_error": "HTTP 500",
    }
    line = cli_webhooks.describe(row)
    assert line.startswith("3\tfailing\t*\thttps://h.example/x\t")
    assert "last_error=HTTP 500" in line

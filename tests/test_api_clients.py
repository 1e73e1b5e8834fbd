"""Two real client libraries, unmodified but for their base URL, against the API
with mail sent over SMTP: mailtm-unofficial (mail.tm) and mailpit-api-client."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import mailtm
import pytest
from mailpit.client.api import API as MailpitAPI
from mailpit.client.models import Messages as MailpitMessages

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .helpers import as_sent


def test_mailtm_unofficial_flow(make_stack):
    stack = make_stack(log_level="debug")  # the test waits for the stream's subscription
    with mailtm.MailTM(base_url=stack.api.url) as client:
        domain = client.get_random_domain()
        assert domain.domain == "example.com" and domain.is_active
        address = f"reader@{domain.domain}"
        created = client.create_account(address, "reader-password")  # and logs in
        assert created.address == address and client.token and client.account
        assert client.me().id == created.id
        assert client.get_account(created.id).address == address

        # Wait for a message over SSE: the library's own EventStream, pointed at us.
        stream = mailtm.EventStream(
            token=client.token,
            topic=f"/accounts/{created.id}",
            hub_url=f"{stack.api.url}/.well-known/mercure",
        )
        events: queue.Queue[mailtm.Event] = queue.Queue()

        def listen() -> None:
            for event in stream.iter_events():
                events.put(event)
                if event.json().get("@type") == "Account":
                    return  # leaving the loop closes the response

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        stack.api.wait_for_log(r"stream subscribed")
        raw = mail(address, subject="Your code", text="code 424242", html="<p>code <b>424242</b>")
        send(stack.smtp.port, [address], raw)
        message_event = events.get(timeout=30)
        assert message_event.event_type is None  # unnamed, like Mercure's
        assert message_event.json()["subject"] == "Your code"
        account_event = events.get(timeout=30).account()
        assert account_event is not None and account_event.used and account_event.used > 0
        thread.join(30)

        # List, read, raw .eml, source, mark seen, delete.
        page = client.get_messages()
        assert page.total == 1 and not page.has_next
        [summary] = page.members
        assert summary.subject == "Your code" and summary.intro == "code 424242"
        assert summary.from_ is not None and summary.from_.address == "alice@sender.test"
        assert client.wait_for_message(subject="your code", timeout=10).id == summary.id
        message = client.get_message(summary.id)
        assert message.text.startswith("code 424242")
        assert len(message.html) == 1 and "<b>424242</b>" in message.html[0]
        assert message.to[0].address == address
        assert as_sent(client.download_message(summary.id)) == raw
        assert "Subject: Your code" in client.get_source(summary.id)["data"]
        assert client.mark_seen(summary.id) is True
        assert client.get_message(summary.id).seen is True
        client.delete_message(summary.id)
        with pytest.raises(mailtm.NotFoundError):
            client.get_message(summary.id)
        assert client.get_messages().total == 0
        client.delete_account()
        with pytest.raises(mailtm.AuthenticationError):
            client.login(address, "reader-password")


def test_mailtm_unofficial_errors(stack):
    with mailtm.MailTM(base_url=stack.api.url) as client:
        with pytest.raises(mailtm.ValidationError) as bad:
            client.create_account("someone@not-served.test", "reader-password")
        assert bad.value.status_code == 422
        with pytest.raises(mailtm.AuthenticationError):
            client.get_messages()  # no token


def test_mailpit_api_client_flow(stack):
    address = "box@example.com"
    attachment = (("notes.txt", "text/plain", b"take notes"),)
    # The library's Headers model requires Delivered-To (and Date, From,
    # Message-Id, Content-Type), which not every message has (Mailpit adds
    # none): a library bug; this message carries one, as forwarded mail does.
    first_raw = b"Delivered-To: box@example.com\r\n" + mail(
        address, subject="first", attachments=attachment
    )
    send(stack.smtp.port, [address], first_raw)
    send(stack.smtp.port, [address], mail(address, subject="second one"))
    client = MailpitAPI(f"{stack.api.url}/mailpit/{address}", timeout=30)

    deadline = time.monotonic() + 30
    while (listed := client.get_messages()).total < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert listed.unread == 2 and listed.count == 2 and listed.start == 0
    assert [m.subject for m in listed.messages] == ["second one", "first"]
    first = listed.messages[1]
    assert first.attachments == 1 and first.from_ is not None
    assert first.from_.address == "alice@sender.test"

    latest = client.get_message("latest")  # read latest (marks it read)
    assert latest.subject == "second one" and latest.attachments == []
    assert client.get_messages().unread == 1
    full = client.get_message(first.id)
    [attached] = full.attachments
    assert attached.file_name == "notes.txt" and attached.size == len(b"take notes")
    assert client.get_message_attachment(first.id, attached.part_id) == "take notes"
    headers = client.get_message_headers(first.id)
    assert headers.from_ == ["Alice Sender <alice@sender.test>"]
    assert headers.message_id[0].endswith("@sender.test>")

    client.put_messages([first.id], "Read", False)
    assert client.get_messages().unread == 1

    # The library has no search or raw method: the same base URL, its own models.
    search = httpx.get(f"{client.mailpit_url}/api/v1/search", params={"query": "subject:first"})
    found = MailpitMessages.from_json(search.text)
    assert [m.subject for m in found.messages] == ["first"]
    raw = httpx.get(f"{client.mailpit_url}/api/v1/message/{first.id}/raw")
    assert b"Subject: first" in raw.content

    client.delete_messages([first.id])  # sent form-encoded by the library
    assert [m.subject for m in client.get_messages().messages] == ["second one"]
    client.delete_messages([])  # empty: everything of this address
    assert client.get_messages().total == 0

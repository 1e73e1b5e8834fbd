"""Codes and links through the real service and API (README "Codes and
links"): mail sent over SMTP is stored with its codes and verification link,
which the mail.tm and Mailpit JSON, the event stream and GET
/addresses/{address}/code/latest show; the route waits for the next message
with a code, times out with 204, and reads only what its credential may."""

from __future__ import annotations

import concurrent.futures
import re
import socket
import uuid

from .api_fixtures import make_stack, stack
from .api_helpers import account, mail, next_event, open_stream, send, sse_events
from .helpers import eventually, query

CODE = "482193"
LINK = "https://acme.test/verify?token=Zx81Kq72Lm0aPq"
HTML = (
    f'<p>Your verification code is <b>{CODE}</b>.</p><p><a href="{LINK}">Verify your email</a></p>'
)


def code_mail(to: str, code: str = CODE, subject: str = "Your Acme verification code") -> bytes:
    text = f"Hi,\n\nYour verification code is {code}.\n\nIt expires in 10 minutes.\n"
    return mail(to, subject=subject, text=text, html=HTML.replace(CODE, code))


def test_codes_in_the_row_both_apis_and_the_event(stack):
    address = "bob@example.com"
    with stack.client() as client:
        bob_id, token = account(client, address)
        with open_stream(client, f"/accounts/{bob_id}", token) as response:
            events = sse_events(response)
            send(stack.smtp.port, [address], code_mail(address))
            event = next_event(events)["data"]
            assert event["@type"] == "Message"
            assert event["codes"] == [CODE] and event["verifyLink"] == LINK
        send(stack.smtp.port, [address], mail(address, subject="plain", text="Lunch at 12:30?"))
        [[codes, link]] = query(
            stack.database_url,
            "SELECT codes, verify_link FROM emails WHERE id = $1",
            uuid.UUID(event["id"]),
        )
        assert (codes, link) == ([CODE], LINK)
        auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        full = client.get(f"/messages/{event['id']}", headers=auth).json()
        assert full["codes"] == [CODE] and full["verifyLink"] == LINK
        listed = {m["subject"]: m for m in client.get("/messages", headers=auth).json()}
        assert listed["plain"]["codes"] == [] and listed["plain"]["verifyLink"] is None
        assert listed["Your Acme verification code"]["codes"] == [CODE]
        box = f"/mailpit/{address}/api/v1"
        message = client.get(f"{box}/message/{event['id']}", headers=auth).json()
        assert message["Codes"] == [CODE] and message["VerifyLink"] == LINK
        summaries = {
            m["Subject"]: m for m in client.get(f"{box}/messages", headers=auth).json()["messages"]
        }
        assert summaries["Your Acme verification code"]["Codes"] == [CODE]
        assert "Codes" not in summaries["plain"] and "VerifyLink" not in summaries["plain"]
        found = client.get(f"{box}/search", params={"query": "has:code"}, headers=auth).json()
        assert [m["Subject"] for m in found["messages"]] == ["Your Acme verification code"]


def waits(stack) -> int:
    """How many code/latest requests have started waiting (the API's debug log)."""
    return len(re.findall(r"\[codes\] a request waits", stack.api.log))


def test_code_latest_waits_for_the_next_message_with_a_code(make_stack):
    stack = make_stack(log_level="debug")
    address = "carol@example.com"
    latest = f"/addresses/{address}/code/latest"
    with stack.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert client.get(latest).status_code == 404  # nothing yet
        send(stack.smtp.port, [address], code_mail(address, "111222"))
        first = client.get(latest)
        assert first.status_code == 200 and first.json()["code"] == "111222"
        assert first.json()["verifyLink"] == LINK
        # ?wait: the NEXT message with a code, not the one already there.
        waiting = pool.submit(client.get, latest, params={"wait": "50"}, timeout=90)
        eventually(lambda: waits(stack) == 1)
        send(stack.smtp.port, [address], mail(address, subject="no code", text="Hello"))
        send(stack.smtp.port, [address], code_mail(address, "333444", subject="second"))
        answer = waiting.result(timeout=90)
        assert answer.status_code == 200, answer.text
        assert answer.json()["code"] == "333444" and answer.json()["subject"] == "second"
        assert answer.json()["codes"] == ["333444"]
        # Nothing comes: 204 once the wait is over (bounded by the server).
        assert client.get(latest, params={"wait": "0.5"}).status_code == 204
        assert client.get(latest, params={"wait": "soon"}).status_code == 400
        assert client.get(latest).json()["code"] == "333444"


def test_code_latest_reads_only_what_its_credential_may(stack):
    with stack.client() as client:
        _, bob = account(client, "bob@example.com")
        account(client, "dave@example.com")
        send(stack.smtp.port, ["dave@example.com"], code_mail("dave@example.com"))
        send(stack.smtp.port, ["bob@example.com"], code_mail("bob@example.com", "555666"))
        dave = "/addresses/dave@example.com/code/latest"
        # Bob's token reads Bob's address only, also while waiting.
        assert client.get(dave, headers={"Authorization": f"Bearer {bob}"}).status_code == 403
        refused = client.get(dave, params={"wait": "5"}, headers={"Authorization": f"Bearer {bob}"})
        assert refused.status_code == 403
        assert client.get(dave).status_code == 401  # a claimed address needs its token
        own = client.get(
            "/addresses/bob@example.com/code/latest", headers={"Authorization": f"Bearer {bob}"}
        )
        assert own.status_code == 200 and own.json()["code"] == "555666"
        # An open address with someone else's token: refused, not read anonymously.
        open_box = "/addresses/erin@example.com/code/latest"
        assert client.get(open_box, headers={"Authorization": f"Bearer {bob}"}).status_code == 403


def test_a_wait_answers_only_if_the_address_is_still_readable(make_stack):
    """An open address claimed (an account made) while a request waits: the
    message is not given to the request that has no credential for it."""
    stack = make_stack(log_level="debug")
    address = "frank@example.com"
    latest = f"/addresses/{address}/code/latest"
    with stack.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.get, latest, params={"wait": "50"}, timeout=90)
        eventually(lambda: waits(stack) == 1)
        account(client, address)
        send(stack.smtp.port, [address], code_mail(address))
        assert waiting.result(timeout=90).status_code == 401


def test_codes_of_mail_with_much_text_are_read_too(stack):
    """Past parse.INLINE_CODE_CHARS of text, or past the inline parse limits,
    the codes are read in a parser process: the row has them all the same."""
    filler = "Terms and conditions apply to this account. " * 2_000  # 90 KB
    sizes = {"much text": filler, "very large": filler * 4}  # 360 KB: parses_slowly
    for subject, tail in sizes.items():
        text = f"Your verification code is {CODE}.\n\n{tail}"
        send(stack.smtp.port, ["gina@example.com"], mail("gina@example.com", subject, text))
    stored = query(
        stack.database_url,
        "SELECT subject, codes FROM emails WHERE mailbox_owner = 'gina@example.com'",
    )
    assert {r["subject"]: r["codes"] for r in stored} == {s: [CODE] for s in sizes}


def test_a_client_that_leaves_ends_its_wait(make_stack):
    """A waiting request whose client hangs up stops waiting (and watching) at once."""
    stack = make_stack(log_level="debug")
    with socket.create_connection(("127.0.0.1", stack.api.port), timeout=30) as client:
        client.sendall(
            b"GET /addresses/henry@example.com/code/latest?wait=60 HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n\r\n"
        )
        eventually(lambda: waits(stack) == 1)
    stack.api.wait_for_log(r"\[codes\] a waiting client left", timeout=30)

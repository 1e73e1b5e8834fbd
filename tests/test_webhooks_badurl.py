"""A URL that httpx cannot send (a control character: a tab, a newline)
never sticks an event: `add` refuses it, and one stored anyway (by an older
version) fails each attempt like any receiver error, with backoff, until it
is dropped, instead of raising before the attempt is recorded (then the
event stayed due, was taken again at every poll and never given up)."""

from __future__ import annotations

import httpx

from .api_helpers import ApiServer, account, mail, send
from .helpers import eventually, query
from .webhook_helpers import FAST, endpoint, outbox

ADDRESS = "tabbed@example.com"


def test_control_character_url_is_refused_and_never_sticks(make_server, database_url, tmp_path):
    # Long enough that the first attempt comes before the event is too old to
    # send at all (then it is dropped unsent, and the URL never tried).
    server = make_server(**FAST, webhook_max_age="10")
    api = ApiServer(database_url, str(tmp_path / "data"), **FAST)
    client = httpx.Client(timeout=30)
    try:
        api.start()
        client.base_url = httpx.URL(api.url)
        _, token = account(client, ADDRESS)
        tabbed = "http://127.0.0.1:9/hook\x01"
        made = client.post(
            "/webhooks", json={"url": tabbed}, headers={"Authorization": f"Bearer {token}"}
        )
        assert made.status_code == 422, made.text
        rows = query(
            database_url,
            "INSERT INTO webhook_endpoints (url, address, secret) "
            "VALUES ($1, $2, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id",
            tabbed,
            ADDRESS,
        )
        hook = rows[0]["id"]
        server.wait_for_log(r"\[webhooks\] subscribed: not every address, 1 addresses")
        send(server.port, [ADDRESS], mail(ADDRESS, "stuck?"))
        # Each attempt is recorded as refused (the last may be given up for its age).
        eventually(lambda: "refused" in (endpoint(database_url, hook)["last_error"] or ""))
        eventually(lambda: endpoint(database_url, hook)["given_up"] == 1)
        assert outbox(database_url) == []
    finally:
        client.close()
        if api.process is not None and api.process.poll() is None:
            api.kill()

"""`domains add` reaches a running service at once also with
LISTS_SOURCE=supabase (found by review: it LISTENed only for the postgres
source, so the CLI's NOTIFY reached nobody until DOMAINS_REFRESH, 120 s).

The fake PostgREST stands for Supabase's REST API over the same database:
the test puts the row where each side reads it.
"""

from __future__ import annotations

from .helpers import app_command, eventually, smtp_reply
from .netfakes import PostgREST

KEY = "service-role-key-for-tests"


def test_cli_domain_reaches_a_supabase_sourced_service_at_once(make_server, database_url):
    tables = {
        "domains": [{"id": 1, "domain": "example.com", "active": True}],
        "bans": [
            {
                "id": 1,
                "scope": "email",
                "value": "x@y.test",
                "match_type": "exact",
                "status": "inactive",
            }
        ],
        "private_email": [{"id": 1, "email": "nobody@example.com"}],
    }
    fake = PostgREST(tables, KEY)
    try:
        server = make_server(domains=("example.com",), supabase_url=fake.url, supabase_key=KEY)
        first = smtp_reply(server.port, "a@sender.test", "x@later.test")
        assert first[0] == 550, (first, server.log[-3000:])
        # Supabase's REST API and the CLI see one database: the row first.
        fake.tables["domains"].append({"id": 2, "domain": "later.test", "active": True})
        result = app_command("domains", "add", "later.test", DATABASE_URL=database_url)
        assert result.returncode == 0, result.stderr
        # DOMAINS_REFRESH is 120 s: only the NOTIFY can make this true in time.
        eventually(lambda: smtp_reply(server.port, "a@sender.test", "x@later.test")[0] == 250)
    finally:
        fake.stop()

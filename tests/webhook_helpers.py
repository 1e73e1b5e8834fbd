"""Helpers of the webhook tests: endpoints added with the real command line,
their rows read from the database, the service's fast-retry settings."""

from __future__ import annotations

import re
from typing import Any

from .helpers import app_command, query

# Retries in fractions of a second, so a test waits for conditions, not minutes.
FAST = {
    "webhook_allow_private": "true",  # the receivers listen on 127.0.0.1
    "webhook_retry_first": "0.2",
    "webhook_retry_max": "0.5",
    "webhook_poll": "0.2",
}


def add_hook(
    database_url: str, url: str, *options: str, allow_private: bool = True
) -> tuple[int, str]:
    """`tempmail webhooks add URL OPTIONS`: (endpoint id, secret)."""
    done = app_command(
        "webhooks",
        "add",
        url,
        *options,
        DATABASE_URL=database_url,
        WEBHOOK_ALLOW_PRIVATE=str(allow_private).lower(),
    )
    assert done.returncode == 0, done.stderr
    endpoint = re.search(r"added webhook (\d+)", done.stdout)
    secret = re.search(r"(whsec_\S+)", done.stdout)
    assert endpoint and secret, done.stdout
    return int(endpoint.group(1)), secret.group(1)


def hooks_list(database_url: str) -> str:
    done = app_command("webhooks", "list", DATABASE_URL=database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def endpoint(database_url: str, endpoint_id: int) -> dict[str, Any]:
    rows = query(database_url, "SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return dict(rows[0])


def outbox(database_url: str) -> list[dict[str, Any]]:
    return [dict(r) for r in query(database_url, "SELECT * FROM webhook_outbox ORDER BY id")]


def email_ids(database_url: str, address: str) -> list[str]:
    rows = query(
        database_url,
        "SELECT id FROM emails WHERE mailbox_owner = $1 ORDER BY received_at, subject",
        address,
    )
    return [str(r["id"]) for r in rows]

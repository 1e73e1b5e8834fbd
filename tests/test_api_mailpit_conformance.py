"""Mailpit's published spec (../shared/specs/mailpit-v1-swagger.json, v1.30.5)
drives a seeded property-based run (schemathesis) over every one of its
operations, against one address of the real API holding varied mail sent
over real SMTP. Each generated request is sent; the answer must be no
server error, a documented status code, a documented content type and a
body matching the documented schema. Real message IDs, part IDs and tags
are mixed into the generated path parameters (else nearly every request
would ask for a message that does not exist).

Where Mailpit's handlers (its server/apiv1 Go source, what Mailpit clients
meet) answer otherwise than its spec, the handlers are followed; each such
place is `HANDLERS_DIFFER` below, with the handler that says so.

CONFORMANCE_EXAMPLES (default 12 per operation) sets the depth and
CONFORMANCE_SEED (default 27) the seed: the suite runs the seeded short
run (about 250 requests); `CONFORMANCE_EXAMPLES=150 scripts/test
tests/test_api_mailpit_conformance.py -s` is a deeper one. Both print
their counts.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .test_api_mailpit_letter import NO_FROM, PARTS
from .test_api_mailpit_routes import wait_total
from .test_page_inline_images import with_logo

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "mailpit-v1-swagger.json"
EXAMPLES = int(os.environ.get("CONFORMANCE_EXAMPLES", "12"))
SEED = int(os.environ.get("CONFORMANCE_SEED", "27"))
BOX = "box@example.com"
SCRATCH = "scratch@example.com"  # DELETE messages and DELETE search run here (they empty it)
DESTRUCTIVE = {("DELETE", "/api/v1/messages"), ("DELETE", "/api/v1/search")}


def handlers_differ(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as Mailpit's handlers answer (a copy; the file is untouched)."""
    spec = copy.deepcopy(spec)
    paths = spec["paths"]
    # messages.go DeleteSearch writes `ok` in text/plain; the spec says JSON.
    paths["/api/v1/search"]["delete"]["produces"] = ["text/plain"]
    # message.go DownloadAttachment sends a part with its own type: an attached
    # message is message/rfc822, a type the spec's list leaves out.
    paths["/api/v1/message/{ID}/part/{PartID}"]["get"]["produces"].append("message/*")
    # Every handler answers its errors in text/plain (api.go httpError,
    # fourOFour), whatever the operation produces: errors_in_text() below
    # checks them; the spec's `produces` is checked on successes only.
    return spec


def errors_in_text(response: schemathesis.Response, method: str, path: str) -> str | None:
    """What is wrong with an error answer's form, or None: text/plain, except
    POST /send's JSON {"Error": ...} (send.go httpJSONError)."""
    kind = (response.headers.get("content-type") or [""])[0]
    if (method, path) == ("POST", "/api/v1/send"):
        ok = kind.startswith("application/json") and "Error" in response.json()
        return None if ok else f"send error as {kind}: {response.text[:80]}"
    return None if kind.startswith("text/plain") else f"error as {kind}: {response.text[:80]}"


def seed_mail(stack) -> None:
    """Varied mail: text, HTML with an inline image, attachments, every kind
    of MIME leaf, a bounce without From, an attached message, encoded words."""
    port = stack.smtp.port
    files = (("a.pdf", "application/pdf", b"%PDF-1.4"), ("n.txt", "text/plain", b"notes"))
    forwarded = mail(BOX, subject="inner")
    for raw, sender in (
        (mail(BOX, subject="plain"), "alice@sender.test"),
        (mail(BOX, subject="html", html="<p>hi <b>there</b></p>", attachments=files), "a@s.test"),
        (with_logo(BOX), "shop@sender.test"),
        (PARTS.replace(b"To: box@example.com", f"To: {BOX}".encode()), "alice@sender.test"),
        (NO_FROM, ""),
        (
            mail(BOX, subject="=?utf-8?q?caf=C3=A9?=", sender="=?utf-8?q?J=C3=BCrgen?= <j@x.test>"),
            "j@x.test",
        ),
        (
            mail(BOX, subject="fwd", attachments=(("m.eml", "message/rfc822", forwarded),)),
            "f@x.test",
        ),
    ):
        send(port, [BOX, SCRATCH], raw, sender=sender)


def real_values(client) -> dict[str, list[str]]:
    """IDs, PartIDs and tags that exist, to mix into generated path parameters."""
    messages = wait_total(client, 7, f"/mailpit/{BOX}/api/v1/messages")["messages"]
    ids = [m["ID"] for m in messages]
    client.put(f"/mailpit/{BOX}/api/v1/tags", json={"Tags": ["Work", "news"], "IDs": ids[:3]})
    parts = set()
    for ident in ids:
        body = client.get(f"/mailpit/{BOX}/api/v1/message/{ident}").json()
        parts |= {a["PartID"] for a in body["Attachments"] + body["Inline"]}
    return {"ID": [*ids, "latest"], "PartID": sorted(parts), "Tag": ["Work", "news"]}


class Tally:
    """Requests sent and problems found, by kind (what the run reports)."""

    def __init__(self) -> None:
        self.requests = 0
        self.problems: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, where: str, detail: str) -> None:
        self.problems[kind] += 1
        self.examples.setdefault(f"{kind} {where}", detail[:400])


def kind_of(failure: Exception) -> str:
    name = type(failure).__name__
    return {
        "ServerError": "server error",
        "JsonSchemaError": "schema violation",
        "UndefinedStatusCode": "undocumented status",
        "UndefinedContentType": "undocumented content type",
    }.get(name, name)


def check_one(case, response: schemathesis.Response, tally: Tally) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    where = f"{method} {path}"
    checks = [not_a_server_error, status_code_conformance]
    if response.status_code < 400:
        checks += [content_type_conformance, response_schema_conformance]
    else:
        problem = errors_in_text(response, method, path)
        if problem:
            tally.add("undocumented content type", where, problem)
    try:
        case.validate_response(response, checks=checks)
    except FailureGroup as group:
        for failure in group.exceptions:
            tally.add(kind_of(failure), where, f"{response.status_code} {failure}")


def run_operation(operation, base: str, real: dict[str, list[str]], tally: Tally) -> None:
    names = [p.name for p in operation.path_parameters]
    choices = st.fixed_dictionaries(
        {name: st.one_of(st.none(), st.sampled_from(real[name])) for name in names}
    )
    session = requests.Session()

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(), mixed=choices)
    def one(case, mixed: dict[str, str | None]) -> None:
        for name, value in mixed.items():
            if value is not None:
                case.path_parameters[name] = value
        tally.requests += 1
        response = case.call(base_url=base, session=session, timeout=30)
        check_one(case, response, tally)

    one()


def test_mailpit_spec_conformance(make_stack):
    stack = make_stack()  # API_RATE_LIMIT is 100000 in the tests
    seed_mail(stack)
    with stack.client() as client:
        real = real_values(client)
        wait_total(client, 7, f"/mailpit/{SCRATCH}/api/v1/messages")
    spec = handlers_differ(json.loads(SPEC.read_text()))
    schema = schemathesis.openapi.from_dict(spec)
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        address = SCRATCH if (operation.method.upper(), operation.path) in DESTRUCTIVE else BOX
        base = f"{stack.api.url}/mailpit/{urllib.parse.quote(address, safe='@')}"
        run_operation(operation, base, real, tally)
    print(
        f"\nconformance: {len(operations)} operations, {EXAMPLES} examples each (seed {SEED}): "
        f"{tally.requests} requests, {tally.problems['server error']} server errors, "
        f"{tally.problems['schema violation']} schema violations, "
        f"{sum(tally.problems.values())} problems in all {dict(tally.problems)}"
    )
    assert len(operations) == 25  # every operation of the spec
    assert not tally.problems, json.dumps(tally.examples, indent=1)

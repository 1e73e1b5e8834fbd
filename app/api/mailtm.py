"""mail.tm / mail.gw compatible routes at the API root.

Same paths, fields, status codes and content negotiation as that API
(docs.mail.tm): JSON-LD/Hydra by default, a bare JSON array for
collections when the client sends `Accept: application/json`. Every
message route works on the mailbox of the account the bearer token names;
a message of another mailbox is 404, as if it did not exist.

Our additions, documented in the README: `GET /messages/{id}?remoteImages=1`
keeps remote images in the sanitised HTML, and attachment downloads live at
`/messages/{id}/attachment/{ATTACH000001}` (the `downloadUrl` we write).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import policy
from . import access, context, mime, queries_accounts, queries_mail, shapes
from .context import (
    Account,
    account_for_basic,
    account_for_token,
    base_url,
    download,
    json_response,
    raw_of,
    state,
    wants_ld,
)

QUOTA = 40_000_000  # bytes, as mail.tm reports (informational: nothing enforces it)


def error(status: int, description: str, request: Request) -> Response:
    ld = wants_ld(request)
    return json_response(shapes.error(status, description, ld), status, ld)


def not_found(request: Request) -> Response:
    return error(404, "Not Found", request)


def unauthorized(message: str) -> Response:
    return json_response(shapes.unauthorized(message), 401)


async def current_account(request: Request) -> Account | Response:
    """The account of the request's bearer token, or the 401 to send."""
    cred = access.credential(request.headers.get("authorization"))
    if cred.token is None:
        return unauthorized("JWT Token not found")
    claims = access.read_token(state(request).secret, cred.token)
    if claims is None:
        return unauthorized("Invalid JWT Token")
    account = await account_for_token(state(request), cred.token)
    if account is None:
        return unauthorized("Invalid JWT Token")
    return account


# The last page whose OFFSET PostgreSQL takes (a bigint): a larger one is an
# error of the request, not of the database.
MAX_PAGE = (2**63 - 1) // shapes.PER_PAGE


def page_number(request: Request) -> int | Response:
    """?page=N (default 1), or the 400 to answer."""
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        page = 0
    if page < 1:
        return error(400, "Page should not be less than 1", request)
    if page > MAX_PAGE:
        return error(400, f"Page should not be greater than {MAX_PAGE}", request)
    return page


async def read_json(request: Request) -> dict[str, Any] | None:
    """The body's JSON object; None if it is not one. Nesting deeper than
    the interpreter's recursion limit is as unreadable as a syntax error."""
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) and access.storable(body) else None


# Domains ------------------------------------------------------------------------------


def _exact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows a client can make an address on: `*.example.com` entries are not domains."""
    return [r for r in rows if not str(r["domain"]).startswith("*.")]


async def list_domains(request: Request) -> Response:
    page = page_number(request)
    if isinstance(page, Response):
        return page
    rows, _ = await state(request).domains()
    active = [r for r in _exact(rows) if r.get("active") is not False]
    chosen = active[(page - 1) * shapes.PER_PAGE : page * shapes.PER_PAGE]
    ld = wants_ld(request)
    members = [shapes.domain(r, ld) for r in chosen]
    body = shapes.collection(members, len(active), page, "/domains", "Domain", ld)
    return json_response(body, ld=ld)


async def get_domain(request: Request) -> Response:
    rows, _ = await state(request).domains()
    wanted = request.path_params["id"]
    for row in _exact(rows):
        if shapes.domain_id(row) == wanted:
            ld = wants_ld(request)
            return json_response(shapes.domain(row, ld), ld=ld)
    return not_found(request)


# Accounts -----------------------------------------------------------------------------


def address_problem(address: object) -> str | None:
    if not isinstance(address, str) or not address.strip():
        return "This value should not be blank."
    text = address.strip()
    if policy.address_problem(text) or text.count("@") != 1 or " " in text or '"' in text:
        return "This value is not a valid email address."
    return None


async def create_account(request: Request) -> Response:
    ctx = state(request)
    body = await read_json(request)
    if body is None:
        return error(400, "Syntax error", request)
    problems: list[tuple[str, str]] = []
    address = body.get("address")
    if (problem := address_problem(address)) is not None:
        problems.append(("address", problem))
    if (problem := access.password_problem(body.get("password"))) is not None:
        problems.append(("password", problem))
    if not problems:
        assert isinstance(address, str)
        address = policy.normalize_address(address)
        domain = address.rpartition("@")[2]
        rows, matcher = await ctx.domains()
        if not matcher.matches(domain):
            problems.append(("address", "This domain is not served here."))
        elif address in ctx.private:
            # It belongs to a user of the website: the operator makes its account.
            problems.append(("address", "This value is already used."))
    if problems:
        return json_response(shapes.violations(problems), 422, ld=True)
    assert isinstance(address, str)
    row = await queries_accounts.create_account(
        ctx.pool, address, await access.hash_password(body["password"]), by_operator=False
    )
    if row is None:
        return json_response(
            shapes.violations([("address", "This value is already used.")]), 422, ld=True
        )
    ld = wants_ld(request)
    used = await queries_mail.used_bytes(ctx.pool, address)
    return json_response(shapes.account(row, used, ld, QUOTA), 201, ld)


async def token(request: Request) -> Response:
    ctx = state(request)
    body = await read_json(request)
    if body is None or not isinstance(body.get("address"), str):
        return error(400, 'The key "address" must be provided.', request)
    password = body.get("password")
    if not isinstance(password, str):
        return error(400, 'The key "password" must be provided.', request)
    account = await account_for_basic(ctx, body["address"], password)
    if account is None:
        return unauthorized("Invalid credentials.")
    generation = access.token_generation(account.row)  # read with the hash it proved
    signed = access.issue_token(ctx.secret, account.id, account.address, generation)
    return json_response({"token": signed, "id": str(account.id)})


async def me(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    return await _account_response(request, account)


async def _account_response(request: Request, account: Account) -> Response:
    ld = wants_ld(request)
    used = await queries_mail.used_bytes(state(request).pool, account.address)
    return json_response(shapes.account(account.row, used, ld, QUOTA), ld=ld)


def _same_account(request: Request, account: Account) -> bool:
    return request.path_params["id"] == str(account.id)


async def get_account(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    if not _same_account(request, account):
        return not_found(request)
    return await _account_response(request, account)


async def delete_account(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    if not _same_account(request, account):
        return not_found(request)
    await queries_accounts.delete_account(state(request).pool, account.id, account.address)
    return Response(status_code=204)


# Messages ---------------------------------------------------------------------------


async def list_messages(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    page = page_number(request)
    if isinstance(page, Response):
        return page
    rows, total, _unread = await queries_mail.page(
        state(request).reads, account.address, (page - 1) * shapes.PER_PAGE, shapes.PER_PAGE
    )
    ld = wants_ld(request)
    base = base_url(request)
    members = [shapes.message_summary(r, base, str(account.id), ld) for r in rows]
    body = shapes.collection(members, total, page, "/messages", "Message", ld)
    return json_response(body, ld=ld)


def message_uuid(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.path_params["id"])
    except ValueError:
        return None


async def _own_message(request: Request) -> tuple[Account, Any] | Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    ident = message_uuid(request)
    row = None
    if ident is not None:
        row = await context.message(state(request), account.address, ident)
    if row is None:
        return not_found(request)
    return account, row


async def files_of(request: Request, row: Any) -> list[mime.Part]:
    """Attachments of a stored message (from its raw bytes; none without them)."""
    if row["raw_id"] is None or not shapes.attachment_count(row):
        return []
    work = state(request).mime
    parsed = work.cached(row["raw_id"])
    if parsed is None:
        raw = await context.raw(state(request), row["raw_id"])
        if raw is None:
            return []
        parsed = await work.parsed(row["raw_id"], raw)
    return mime.files(parsed)


async def _full(request: Request, account: Account, row: Any) -> Response:
    ld = wants_ld(request)
    remote = request.query_params.get("remoteImages", "").lower() in ("1", "true", "yes")
    body = shapes.message_full(
        row,
        base_url(request),
        str(account.id),
        ld,
        await files_of(request, row),
        state(request).settings.retention_hours,
        remote,
    )
    return json_response(body, ld=ld)


async def get_message(request: Request) -> Response:
    found = await _own_message(request)
    if isinstance(found, Response):
        return found
    return await _full(request, *found)


PATCH_TYPES = ("application/merge-patch+json", "application/json", "application/ld+json")


async def patch_message(request: Request) -> Response:
    found = await _own_message(request)
    if isinstance(found, Response):
        return found
    account, row = found
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in PATCH_TYPES:
        return error(415, f'The content-type "{content_type}" is not supported.', request)
    body = await read_json(request)
    if body is None or not isinstance(body.get("seen", True), bool):
        return error(400, "Syntax error", request)
    pool = state(request).pool
    if "seen" in body:
        await queries_mail.set_seen(pool, account.address, [row["id"]], body["seen"])
        row = await queries_mail.message(pool, account.address, row["id"])
        if row is None:
            return not_found(request)
    return await _full(request, account, row)


async def delete_message(request: Request) -> Response:
    found = await _own_message(request)
    if isinstance(found, Response):
        return found
    account, row = found
    await queries_mail.delete_mail(state(request).pool, account.address, [row["id"]])
    return Response(status_code=204)


async def _own_raw(request: Request) -> tuple[Any, bytes] | Response:
    """The token's message named by the path and its raw bytes, or the 404 to send."""
    found = await _own_message(request)
    if isinstance(found, Response):
        return found
    raw = await raw_of(request, found[1])
    if raw is None:
        return not_found(request)
    return found[1], raw


async def download_message(request: Request) -> Response:
    found = await _own_raw(request)
    if isinstance(found, Response):
        return found
    row, raw = found
    return download(raw, "message/rfc822", f"{row['id']}.eml")


async def download_attachment(request: Request) -> Response:
    found = await _own_raw(request)
    if isinstance(found, Response):
        return found
    index = shapes.attachment_index(request.path_params["attachment"])
    if index is None:
        return not_found(request)
    row, raw = found
    work = state(request).mime
    files = mime.files(await work.parsed(row["raw_id"], raw))
    if not 1 <= index <= len(files):
        return not_found(request)
    content = await work.part(raw, files[index - 1].part_id)
    if content is None:
        return not_found(request)
    part, data = content
    return download(data, mime.download_type(part), part.filename or f"{part.part_id}.bin")


async def get_source(request: Request) -> Response:
    found = await _own_raw(request)
    if isinstance(found, Response):
        return found
    row, raw = found
    ld = wants_ld(request)
    return json_response(shapes.source(row, raw, base_url(request), ld), ld=ld)


routes = [
    Route("/domains", list_domains, methods=["GET"]),
    Route("/domains/{id}", get_domain, methods=["GET"]),
    Route("/accounts", create_account, methods=["POST"]),
    Route("/token", token, methods=["POST"]),
    Route("/me", me, methods=["GET"]),
    Route("/accounts/{id}", get_account, methods=["GET"]),
    Route("/accounts/{id}", delete_account, methods=["DELETE"]),
    Route("/messages", list_messages, methods=["GET"]),
    Route("/messages/{id}", get_message, methods=["GET"]),
    Route("/messages/{id}", patch_message, methods=["PATCH"]),
    Route("/messages/{id}", delete_message, methods=["DELETE"]),
    Route("/messages/{id}/download", download_message, methods=["GET"]),
    Route("/messages/{id}/attachment/{attachment}", download_attachment, methods=["GET"]),
    Route("/sources/{id}", get_source, methods=["GET"]),
]

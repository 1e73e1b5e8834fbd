"""The framework alternative measured by `python -m bench.api`: the same list and
read routes (GET /messages, GET /messages/{id}) on aiohttp, over the same
queries, shapes and tokens as app/api. Not part of the product.

Run as `python -m bench.api_aiohttp` with the API's settings in the environment.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import uvloop
from aiohttp import web

from app import config
from app.api import access, queries, queries_accounts, queries_mail, shapes

PER_PAGE = shapes.PER_PAGE


def reply(body: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/ld+json",
    )


async def account(request: web.Request) -> tuple[uuid.UUID, str] | None:
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    claims = access.read_token(request.app["secret"], token) if token else None
    if claims is None:
        return None
    row = await queries_accounts.account_by_id(request.app["pool"], claims.account_id)
    if row is None or claims.generation != access.token_generation(row):
        return None
    return row["id"], row["address"]


async def list_messages(request: web.Request) -> web.Response:
    owner = await account(request)
    if owner is None:
        return reply(shapes.unauthorized("JWT Token not found"), 401)
    page = int(request.query.get("page", "1"))
    rows, total, _ = await queries_mail.page(
        request.app["pool"], owner[1], (page - 1) * PER_PAGE, PER_PAGE
    )
    base = f"http://{request.host}"
    members = [shapes.message_summary(r, base, str(owner[0]), True) for r in rows]
    return reply(shapes.collection(members, total, page, "/messages", "Message", True))


async def get_message(request: web.Request) -> web.Response:
    owner = await account(request)
    if owner is None:
        return reply(shapes.unauthorized("JWT Token not found"), 401)
    row = await queries_mail.message(
        request.app["pool"], owner[1], uuid.UUID(request.match_info["id"])
    )
    if row is None:
        return reply(shapes.error(404, "Not Found"), 404)
    base = f"http://{request.host}"
    body = shapes.message_full(row, base, str(owner[0]), True, [], 24)
    return reply(body)


async def main() -> None:
    settings = config.load(env_file=None)
    assert settings.database_url
    app = web.Application()
    app["pool"] = await queries.create_pool(settings.database_url, 4)
    app["secret"] = access.load_secret(settings.api_secret, settings.data_dir)
    app.router.add_get("/messages", list_messages)
    app.router.add_get("/messages/{id}", get_message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.api_bind, settings.api_port).start()
    print(f"[api] aiohttp serving on {settings.api_bind}:{settings.api_port}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main())

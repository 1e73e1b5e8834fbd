"""Mailpit's message tags, per address: GET /tags, PUT /tags (set the tags
of messages), PUT /tags/{Tag} (rename), DELETE /tags/{Tag}; `tag:` and
`is:tagged` in search (search.py).

A tag lives on its messages (emails.tags, migration 050): an address's tags
are the names its messages carry, so a tag no message carries is gone, as
Mailpit prunes unused ones. Names are Mailpit's: cleaned (characters
outside letters, digits, space, `-`, `_`, `.` and `@` become spaces, runs
of spaces one, at most 100 characters) and unique in any case: a tag set
in another case than one the address has takes that one's spelling. What a
message shows as tags is queries_search.TAGS (where another mark, such as junk,
can become a tag).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import queries_tags, shapes_mailpit
from .context import json_response, state
from .mailpit_common import BodyError, bad_request, body_fields, mailbox, text, uuids

MAX_TAG = 100
_INVALID = re.compile(r"[^a-zA-Z0-9\- _.@]")
_SPACES = re.compile(r"\s+")
_VALID = re.compile(r"[a-zA-Z0-9\- _.@]{1,100}")


def clean_tag(name: str) -> str:
    """Mailpit's tools.CleanTag."""
    return _SPACES.sub(" ", _INVALID.sub(" ", name)).strip()[:MAX_TAG]


def tags_to_set(wanted: Iterable[str], existing: Iterable[str]) -> list[str]:
    """The tags PUT /tags sets: `wanted` cleaned, the invalid and the repeated
    (in any case) left out, each in the spelling the address already has."""
    spelling = {tag.lower(): tag for tag in existing}
    found: dict[str, str] = {}
    for name in map(clean_tag, wanted):
        if _VALID.fullmatch(name) and name.lower() not in found:
            found[name.lower()] = spelling.get(name.lower(), name)
    return list(found.values())


def rename_problem(old: str, new: str, existing: Sequence[str]) -> str | None:
    """Why Mailpit's RenameTag refuses renaming `old` to (cleaned) `new`, or None."""
    if not _VALID.fullmatch(new):
        return f"invalid tag name: {new}"
    lowered = {tag.lower() for tag in existing}
    if old.lower() not in lowered:
        return f"tag not found: {old}"
    if new.lower() != old.lower() and new.lower() in lowered:
        return f"tag already exists: {new}"
    return None


async def _tags(request: Request, address: str) -> list[str]:
    return list(await queries_tags.tag_counts(state(request).pool, address))


async def get_tags(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    return json_response(shapes_mailpit.sorted_tags(await _tags(request, found[0])))


async def set_tags(request: Request) -> Response:
    """PUT /tags {"Tags": [...], "IDs": [...]}: replace those messages' tags."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    try:
        fields = await body_fields(request, {"Tags": list, "IDs": list})
    except BodyError as refused:
        return bad_request(str(refused))
    ids = uuids(fields["IDs"])
    if ids:
        tags = tags_to_set(fields["Tags"], await _tags(request, found[0]))
        await queries_tags.set_tags(state(request).pool, found[0], ids, tags)
    return text("ok")


async def rename_tag(request: Request) -> Response:
    """PUT /tags/{Tag} {"Name": "new"}: that tag on every message of the address."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    old = request.path_params["tag"]
    try:
        new = clean_tag((await body_fields(request, {"Name": str}))["Name"])
    except BodyError as refused:
        return bad_request(str(refused))
    if new == old:
        return text("ok")
    problem = rename_problem(old, new, await _tags(request, found[0]))
    if problem is not None:
        return bad_request(problem)
    await queries_tags.replace_tag(state(request).pool, found[0], old, new)
    return text("ok")


async def delete_tag(request: Request) -> Response:
    """DELETE /tags/{Tag}: off every message of the address (the mail stays)."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    tag = request.path_params["tag"]
    if tag.lower() not in {t.lower() for t in await _tags(request, found[0])}:
        return bad_request(f"tag not found: {tag}")
    await queries_tags.replace_tag(state(request).pool, found[0], tag, None)
    return text("ok")


def routes(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/tags", get_tags, methods=["GET"]),
        Route(f"{prefix}/tags", set_tags, methods=["PUT"]),
        Route(f"{prefix}/tags/{{tag}}", rename_tag, methods=["PUT"]),
        Route(f"{prefix}/tags/{{tag}}", delete_tag, methods=["DELETE"]),
    ]

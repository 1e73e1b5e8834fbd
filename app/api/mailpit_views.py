"""Mailpit's routes that show a message's content: its parts (download and
thumbnail) and its views, `/mailpit/{address}/view/{ID}.html|.txt` (Mailpit's
`/view/` routes, per address).

The HTML view is the inbox page's reader: the message's HTML, sanitised,
as a document of its own for a sandboxed iframe, under a
Content-Security-Policy that loads nothing but inline style, data: images
and the message's own inline parts (remote images too with
`?remoteImages=1`). Inline images (`<img src="cid:...">`) show at once:
they are parts of the message, served from this origin, not a sender's
server, so loading them tells no one the mail was opened. As in Mailpit's
view, each `cid:` becomes the URL of its part (an absolute one: the view's
document has an opaque origin), and the CSP allows exactly that message's
part URLs. An iframe or an img cannot send an Authorization header, so
the view and the parts (like the Mercure hub) also take a claimed
address's token as `?authorization=`, carried into the parts' URLs.

Parts are downloads (`Content-Disposition: attachment`, nosniff, a
sandbox CSP), never a page on the API's origin; Mailpit sends them inline.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from . import mime, shapes_mailpit, thumbs
from .context import DOWNLOAD_HEADERS, SAFE_HEADERS, base_url, download, raw_of, state
from .mailpit_common import NO_MESSAGE, bad_request, not_found, parsed_of, path_message, text

NO_HTML = "This message does not contain a HTML part"
# The view of a message's HTML: nothing runs, nothing loads but what is inline
# (and remote images when asked); links may open a new, unsandboxed tab.
VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:{images}; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


def parts_url(request: Request, address: str, row: Any) -> str:
    """The absolute URL its parts' ids are appended to (the view's CSP allows that prefix)."""
    path = f"/mailpit/{urllib.parse.quote(address, safe='@')}/api/v1/message/{row['id']}/part/"
    return base_url(request) + path


async def view_html(request: Request) -> Response:
    """GET /mailpit/{address}/view/{ID}.html[?remoteImages=1]: Mailpit's HTML view."""
    found = await path_message(request, query_token=True, missing_text=NO_MESSAGE)
    if isinstance(found, Response):
        return found
    address, row = found
    if not row["html"]:
        return not_found(NO_HTML)
    prefix = parts_url(request, address, row)
    token = request.query_params.get("authorization")
    suffix = "?" + urllib.parse.urlencode({"authorization": token}) if token else ""
    cids: dict[str, str] = {}
    if "cid:" in row["html"].lower():
        parsed = await parsed_of(request, row)
        if parsed is not None:
            cids = {k: v + suffix for k, v in shapes_mailpit.cid_map(parsed.parts, prefix).items()}
    remote = request.query_params.get("remoteImages", "").lower() in ("1", "true", "yes")
    images = (" " + prefix if cids else "") + (" http: https:" if remote else "")
    return HTMLResponse(
        shapes_mailpit.html_view(row, remote, cids),
        headers={**DOWNLOAD_HEADERS, "Content-Security-Policy": VIEW_CSP.format(images=images)},
    )


async def view_text(request: Request) -> Response:
    """GET /mailpit/{address}/view/{ID}.txt: the message's text, as text."""
    found = await path_message(request, query_token=True, missing_text=NO_MESSAGE)
    if isinstance(found, Response):
        return found
    answer = text(found[1]["body"] or "")
    answer.headers.update(
        {**SAFE_HEADERS, "Content-Security-Policy": "sandbox; default-src 'none'"}
    )
    return answer


async def _part(request: Request) -> tuple[mime.Part, bytes] | Response:
    """The part the path names, among those Mailpit serves (its parser's
    attachment, inline and other lists), or the 404 to send."""
    found = await path_message(request, query_token=True)
    if isinstance(found, Response):
        return found
    raw = await raw_of(request, found[1])
    if raw is None:  # a row without its raw message (Cybertemp's)
        return not_found()
    content = await state(request).mime.part(raw, request.path_params["part"])
    if content is None or not content[0].lists:
        return not_found()
    return content


async def get_part(request: Request) -> Response:
    found = await _part(request)
    if isinstance(found, Response):
        return found
    part, data = found
    name = part.filename or part.content_id or f"part-{part.part_id}"
    return download(data, mime.download_type(part), name)


async def get_thumbnail(request: Request) -> Response:
    """A 180x120 JPEG of an image part (blank for any other part); Mailpit
    answers 400, not 404, when there is no such part."""
    found = await _part(request)
    if isinstance(found, Response):
        return bad_request(bytes(found.body).decode()) if found.status_code == 404 else found
    part, data = found
    image = part.content_type.startswith("image/")
    jpeg = await state(request).mime.thumbnail(data) if image else thumbs.blank()
    return download(jpeg, "image/jpeg", part.filename or part.content_id or "thumbnail")


def routes(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/message/{{id}}/part/{{part}}", get_part, methods=["GET"]),
        Route(f"{prefix}/message/{{id}}/part/{{part}}/thumb", get_thumbnail, methods=["GET"]),
        Route("/mailpit/{address}/view/{id}.html", view_html, methods=["GET"]),
        Route("/mailpit/{address}/view/{id}.txt", view_text, methods=["GET"]),
    ]

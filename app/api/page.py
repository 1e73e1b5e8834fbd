"""The inbox page: `/` (pick or make up an address) and `/inbox/{address}`
(the live list and the reader), served from the files in static/.

Plain HTML, CSS and one small script, read from the package once and
served as they are: no build step, no template, no third-party request.
The pages hold no mail data; the script fetches it from the API's own
routes (Mailpit's per-address ones, the Mercure hub's /addresses/ topic,
POST /token for a claimed address, and ours, /addresses/{address}: is mail
to it received here at all?) and shows it with DOM text nodes.

Every file goes out under a Content-Security-Policy that allows only this
origin's script and style (no inline script), frames only this origin
(the message view, itself sandboxed), and no framing of the page.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..policy import address_problem, normalize_address
from .context import SAFE_HEADERS, json_response, state
from .shapes import error

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    **SAFE_HEADERS,
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated (ETag) each time: an upgrade shows at once
}
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
# Paths that serve files only (no database work): the rate limit does not count them.
FREE_PREFIXES = ("/static/", "/inbox/")


@dataclasses.dataclass(frozen=True)
class File:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def files() -> dict[str, File]:
    """Every file of static/, by name, read once."""
    found = {}
    for entry in (importlib.resources.files(__package__) / "static").iterdir():
        media_type = MEDIA_TYPES.get(entry.name.rpartition(".")[2])
        if entry.is_file() and media_type:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[entry.name] = File(body, media_type, etag)
    return found


def is_free(path: str) -> bool:
    return path == "/" or path.startswith(FREE_PREFIXES)


def serve(request: Request, name: str) -> Response:
    file = files().get(name)
    if file is None:
        return json_response(error(404, "Not Found"), 404, ld=True)
    headers = {**PAGE_HEADERS, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


async def home(request: Request) -> Response:
    return serve(request, "index.html")


async def inbox(request: Request) -> Response:
    # The address is read from the URL by the script; the server writes it nowhere.
    return serve(request, "inbox.html")


async def static(request: Request) -> Response:
    return serve(request, request.path_params["name"])


async def address_status(request: Request) -> Response:
    """Whether this server receives mail for an address (the whitelist, as serve
    reads it from `domains`): the page says mail to it is refused instead of
    waiting for it. `{"address", "domain", "served"}`."""
    ctx = state(request)
    address = normalize_address(request.path_params["address"])
    if address_problem(address):
        return json_response(error(404, "Not Found"), 404, ld=True)
    domain = address.rpartition("@")[2]
    _, served_domains = await ctx.domains()
    served = not ctx.settings.use_domain_whitelist or served_domains.matches(domain)
    return json_response({"address": address, "domain": domain, "served": served})


routes = [
    Route("/", home, methods=["GET"]),
    Route("/inbox/{address}", inbox, methods=["GET"]),
    Route("/static/{name}", static, methods=["GET"]),
    Route("/addresses/{address}", address_status, methods=["GET"]),
]

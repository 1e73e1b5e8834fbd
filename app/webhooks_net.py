"""Webhooks' outbound HTTP: where a URL may lead, and one POST to it.

The only traffic the service starts, so it is fenced: http and https only;
every address the host name resolves to must be global (not private,
loopback, link-local, unspecified, multicast, reserved; an IPv4-mapped IPv6
address is judged by its IPv4 address) unless WEBHOOK_ALLOW_PRIVATE=true;
the request then goes to the address that was checked (the URL's host is
replaced by it; Host and the TLS server name keep the name), so a second
DNS answer cannot send it elsewhere. Redirects are not followed, the whole
attempt has a deadline, and at most WEBHOOK_RESPONSE_BYTES of the reply are
read; an address that refuses the connection passes the attempt to the
name's next one. Numeric forms the resolver accepts (2130706433, 0x7f.1, 0177.0.0.1)
are judged by the address they resolve to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2000  # characters


class Refused(ValueError):
    """The URL may not be used; str() says why, in one line."""


def address_problem(address: IPAddress) -> str | None:
    """Why webhooks may not reach `address` (pure); None if it is global. An
    IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo) is judged
    by that one too."""
    if isinstance(address, ipaddress.IPv6Address):
        teredo = address.teredo
        for inner in (address.ipv4_mapped, address.sixtofour, teredo and teredo[1]):
            if inner and (problem := address_problem(inner)) is not None:
                return f"{address}, which carries {problem}"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"{address} ({kind.replace('_', '-')})"
    if not address.is_global:
        return f"{address} (not global)"
    return None


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one attempt may go: the URL with each checked address as its host,
    in the resolver's order (the next is tried when one cannot be reached)."""

    urls: tuple[str, ...]  # for the request: http://192.0.2.1:8080/path, ...
    host: str  # the name in the URL, for Host and TLS (SNI, certificate)


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL, or Refused naming what is wrong."""
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    # httpx cannot send these (InvalidURL before any attempt); urlsplit drops
    # a tab or newline silently, so the URL shown would not be the one used.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise Refused("the URL has a space or control character (percent-encode it)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise Refused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(url: str, allow_private: bool) -> Target:
    """Resolve the URL's host and check every address; Refused if any fails."""
    scheme, host, port = split_url(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"cannot resolve {host}: {error}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not addresses:
        raise Refused(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            if (problem := address_problem(address)) is not None:
                raise Refused(
                    f"{host} resolves to {problem}; webhooks go to public addresses only "
                    "(WEBHOOK_ALLOW_PRIVATE=true lifts this)"
                )
    parts = urlsplit(url)
    pinned = []
    for address in dict.fromkeys(addresses):
        literal = f"[{address}]" if address.version == 6 else str(address)
        pinned.append(parts._replace(netloc=f"{literal}:{port}").geturl())
    return Target(tuple(pinned), host)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer (refused, connection error, timeout)
    error: str | None  # why the attempt failed; None for a 2xx


def host_header(url: str) -> str:
    """The Host header of the original URL (its port only when not the default)."""
    scheme, host, port = split_url(url)
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # resolve() already refused a name that cannot be encoded
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float,
    cap: int,
) -> Reply:
    """POST `body` to `url` once, through the checks above. Never raises
    for the receiver's sake: every failure is a Reply with its reason."""
    try:
        async with asyncio.timeout(timeout):
            target = await resolve(url, allow_private)
            for n, pinned in enumerate(target.urls, 1):
                request = client.build_request(
                    "POST",
                    pinned,
                    content=body,
                    headers={**headers, "Host": host_header(url)},
                    extensions={"sni_hostname": target.host},
                )
                try:
                    response = await client.send(request, stream=True, follow_redirects=False)
                except httpx.ConnectError:
                    if n == len(target.urls):
                        raise
                    continue  # the name's next address
                try:
                    await _read_capped(response, cap)
                finally:
                    await response.aclose()
                break
    except Refused as error:
        return Reply(0, f"refused: {error}")
    except TimeoutError:
        return Reply(0, f"no answer within {timeout:g}s")
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return Reply(0, f"{type(error).__name__}: {error}"[:300])
    status = response.status_code
    if 200 <= status < 300:
        return Reply(status, None)
    if 300 <= status < 400:
        return Reply(status, f"HTTP {status}: redirects are not followed")
    return Reply(status, f"HTTP {status}")


async def _read_capped(response: httpx.Response, cap: int) -> None:
    """Read up to `cap` bytes of the reply and stop (nothing uses them)."""
    seen = 0
    async for chunk in response.aiter_raw():
        seen += len(chunk)
        if seen >= cap:
            return

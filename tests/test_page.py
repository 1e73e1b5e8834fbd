"""The inbox page over plain HTTP: its routes and headers, its files (no inline
script, nothing third-party, shipped in the package), and the HTML view route
it frames (sanitised, its own CSP, a claimed address's token in the URL).
What the browser does with them: tests/test_page_browser.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser

import httpx

from app.api import page

from .api_fixtures import make_stack, stack
from .api_helpers import account, mail, send, wait_messages
from .helpers import ROOT

STATIC = ROOT / "app" / "api" / "static"
# app.js, an ES module, imports the others.
SCRIPTS = {
    "app.js", "api.js", "codes.js", "home.js", "inbox.js", "live.js", "render.js", "search.js",
    "util.js",
}  # fmt: skip
PAGE_FILES = {"index.html", "inbox.html", "style.css", "icon.svg"} | SCRIPTS


def test_page_routes_and_their_headers(stack):
    with stack.client() as client:
        for path, name in (("/", "index.html"), ("/inbox/Someone@Example.com", "inbox.html")):
            answer = client.get(path)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/html; charset=utf-8"
            assert answer.content == (STATIC / name).read_bytes()
        for name, media_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
            answer = client.get(f"/static/{name}")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(media_type)
        for path in ("/", "/inbox/a@example.com", "/static/app.js", "/static/icon.svg"):
            headers = client.get(path).headers
            assert headers["content-security-policy"] == page.PAGE_CSP
            assert "script-src 'self';" in page.PAGE_CSP and "unsafe" not in page.PAGE_CSP
            assert "frame-ancestors 'none'" in page.PAGE_CSP
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-frame-options"] == "DENY"
            # The page shows senders' links: no DNS lookups for them before a click.
            assert headers["x-dns-prefetch-control"] == "off"
        assert client.get("/static/nothing.js").status_code == 404
        assert client.get("/static/..%2Fpage.py").status_code == 404
        # Revalidated, not re-sent.
        etag = client.get("/static/app.js").headers["etag"]
        again = client.get("/static/app.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""


def test_page_files_are_not_rate_limited(make_stack):
    stack = make_stack(api_rate_limit="0.5")  # a burst of 1, then one every 2 s
    # A fresh client address (the readiness probe came from 127.0.0.1).
    fresh = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=stack.api.url, transport=fresh, timeout=30) as client:
        assert client.get("/domains").status_code == 200
        assert client.get("/domains").status_code == 429  # the API's routes are limited
        paths = ("/", "/static/app.js", "/static/style.css", "/inbox/a@b.c")
        assert [client.get(path).status_code for path in paths] == [200, 200, 200, 200]


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.in_script = True
            if not (names.get("src") or "").startswith("/static/"):
                self.problems.append(f"script without a local src: {attrs}")
        if tag == "style":
            self.problems.append("a style element (the CSP allows only style.css)")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"inline {name} on {tag}")
            if name in ("src", "href") and value and not value.startswith(("/", "#")):
                self.problems.append(f"{tag} {name}={value} is not this origin")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False if tag == "script" else self.in_script

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append("inline script")


def test_page_files_need_nothing_the_csp_refuses():
    assert {p.name for p in STATIC.iterdir()} == PAGE_FILES
    for name in ("index.html", "inbox.html"):
        markup = Markup()
        markup.feed((STATIC / name).read_text())
        assert markup.problems == [], name
    for name in SCRIPTS:
        script = (STATIC / name).read_text()
        # Mail data reaches the page as text: no HTML parsing sinks at all.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script, (name, sink)
        assert "new Function" not in script and "setTimeout('" not in script, name
    # Nothing from another origin (the SVG namespace is a name, never fetched).
    for path in STATIC.iterdir():
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text, path.name


def test_page_files_are_in_the_installed_package(tmp_path):
    """pip builds a wheel of a copy of the project; the page's files are in it."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"app/api/static/{name}" for name in PAGE_FILES} <= names


# The HTML view (Mailpit's /view/{ID}.html, per address) ----------------------------------------

VIEW = "/mailpit/{address}/view/{id}.html"


def test_html_view_is_sanitised_and_locked_down(stack):
    address = "viewer@example.com"
    html = (
        '<p>hello <b>there</b></p><script>alert(1)</script><img src="x" onerror="alert(2)">'
        '<img src="https://img.test/pixel.gif" alt="pixel"><a href="https://ok.test/">link</a>'
    )
    send(stack.smtp.port, [address], mail(address, subject="view me", html=html))
    send(stack.smtp.port, [address], mail(address, subject="text only"))
    with stack.client() as client:
        listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        while listed["total"] < 2:
            listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        text_id, html_id = (m["ID"] for m in listed["messages"])
        view = client.get(VIEW.format(address=address, id=html_id))
        assert view.status_code == 200
        assert view.headers["content-type"] == "text/html; charset=utf-8"
        csp = view.headers["content-security-policy"]
        assert csp.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:;")
        assert "sandbox allow-popups allow-popups-to-escape-sandbox" in csp
        assert "script-src" not in csp and "allow-scripts" not in csp
        assert "allow-same-origin" not in csp
        assert view.headers["x-content-type-options"] == "nosniff"
        assert view.headers["referrer-policy"] == "no-referrer"
        assert view.headers["cache-control"] == "private, no-store"
        assert view.headers["x-dns-prefetch-control"] == "off"  # links in the mail
        body = view.text
        assert body.startswith("<!doctype html>") and "<p>hello <b>there</b></p>" in body
        assert "<script" not in body and "onerror" not in body and "img.test" not in body
        assert 'href="https://ok.test/"' in body and 'target="_blank"' in body
        # Remote images only when asked, and only then allowed by the CSP too.
        images = client.get(VIEW.format(address=address, id=html_id) + "?remoteImages=1")
        assert 'src="https://img.test/pixel.gif"' in images.text
        assert "img-src data: http: https:;" in images.headers["content-security-policy"]
        # Viewing does not mark read (opening the message does).
        assert client.get(f"/mailpit/{address}/api/v1/messages").json()["unread"] == 2
        text_view = client.get(VIEW.format(address=address, id=text_id))
        # As Mailpit's view: a message without HTML is a 404 (the page shows its text).
        assert text_view.status_code == 404
        assert text_view.text == "This message does not contain a HTML part"
        latest = VIEW.format(address=address, id="latest")
        assert client.get(latest).status_code == 404  # the newest is the text one
        assert client.get(latest + "?query=subject:view").status_code == 200
        missing = VIEW.format(address=address, id="00000000-0000-0000-0000-000000000000")
        assert client.get(missing).status_code == 404
        assert client.get(VIEW.format(address=address, id="nonsense")).status_code == 404
        other = VIEW.format(address="other@example.com", id=html_id)
        assert client.get(other).status_code == 404  # another mailbox's message


def test_html_view_of_a_claimed_address_takes_its_token_in_the_url(stack):
    with stack.client() as client:
        _, token = account(client, "kept@example.com")
        _, other_token = account(client, "other@example.com")
        send(stack.smtp.port, ["kept@example.com"], mail("kept@example.com", html="<p>mine</p>"))
        authorised = stack.client(token)
        [message] = wait_messages(authorised, 1)
        path = VIEW.format(address="kept@example.com", id=message["id"])
        assert client.get(path).status_code == 401
        assert client.get(path, params={"authorization": "not-a-token"}).status_code == 401
        assert client.get(path, params={"authorization": other_token}).status_code == 403
        allowed = client.get(path, params={"authorization": token})
        assert allowed.status_code == 200 and "<p>mine</p>" in allowed.text
        assert authorised.get(path).status_code == 200  # the header works as anywhere
        # Only this route takes the token from the URL.
        listing = "/mailpit/kept@example.com/api/v1/messages"
        assert client.get(listing, params={"authorization": token}).status_code == 401
        authorised.close()

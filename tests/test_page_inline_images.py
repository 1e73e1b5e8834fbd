"""Inline (`cid:`) images (issue 22): an `<img src="cid:logo1">` of the
message shows in the reader at once, served from the API's own origin as
the message's part and allowed by the view's Content-Security-Policy; the
Mailpit JSON lists the part under Inline, not Attachments. In Debian's
chromium (tests/browser.py), against the real SMTP service and API."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .api_fixtures import make_stack, stack
from .api_helpers import account, send
from .browser import chromium, wait
from .test_page_browser import frame_ready, open_inbox, rows


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def with_logo(address: str) -> bytes:
    """An HTML message whose logo is its own part, Content-ID <logo1>."""
    png = io.BytesIO()
    Image.new("RGB", (40, 20), "red").save(png, "PNG")
    encoded = base64.encodebytes(png.getvalue()).replace(b"\n", b"\r\n")
    return (
        b"From: Shop <shop@sender.test>\r\nTo: " + address.encode() + b"\r\n"
        b"Subject: with a logo\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Our logo: <img src="cid:logo1" alt="logo"></p>\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo1>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--r--\r\n"
    )


def test_inline_image_shows_at_once(stack, browser):
    driver = browser
    address = "logo@example.com"
    open_inbox(driver, stack.api.url, address)
    send(stack.smtp.port, [address], with_logo(address))
    wait(driver, lambda d: len(rows(d)) == 1)
    rows(driver)[0].click()
    frame_ready(driver)  # loaded, images included, before any click on "Load images"
    image = driver.find_element(By.TAG_NAME, "img")
    assert image.get_attribute("src").startswith(stack.api.url + "/mailpit/")
    assert driver.execute_script("return document.images[0].naturalWidth") == 40
    driver.switch_to.default_content()
    # The Mailpit JSON: the part is Inline, not an attachment.
    with httpx.Client(base_url=stack.api.url) as client:
        listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        message = client.get(f"/mailpit/{address}/api/v1/message/{listed['messages'][0]['ID']}")
    body = message.json()
    assert body["Attachments"] == []
    [inline] = body["Inline"]
    assert inline["ContentID"] == "logo1" and inline["ContentType"] == "image/png"
    assert 'src="cid:logo1"' in body["HTML"]  # as Mailpit's JSON has it


def test_inline_image_of_a_claimed_address_carries_the_token(stack):
    address = "kept@example.com"
    with stack.client() as client:
        _, token = account(client, address, "right-password")
    send(stack.smtp.port, [address], with_logo(address))
    with stack.client(token) as client:
        listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        while not listed["messages"]:  # until the commit
            listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        ident = listed["messages"][0]["ID"]
    with httpx.Client(base_url=stack.api.url) as anonymous:
        view = anonymous.get(
            f"/mailpit/{address}/view/{ident}.html", params={"authorization": token}
        )
        assert view.status_code == 200
        [src] = re.findall(r'<img src="([^"]+)"', view.text)
        policy = view.headers["content-security-policy"]
        prefix = src.split("?")[0].rsplit("/", 1)[0] + "/"
        assert f"img-src data: {prefix};" in policy  # this message's parts, nothing else
        assert anonymous.get(src.replace("&amp;", "&")).headers["content-type"] == "image/png"
        assert anonymous.get(src.split("?")[0]).status_code == 401  # the token it carries

"""The inbox page in a real headless browser (Debian's chromium, tests/browser.py),
against the real SMTP service and `python -m app api` on a fresh database:
mail sent over SMTP shows up live, hostile mail runs nothing, remote images
wait for the click, a claimed address asks for its password once, the live
indicator survives the API going away, and the reader's buttons, keyboard,
phone width and dark scheme work."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from .api_fixtures import make_stack, stack
from .api_helpers import ApiServer, account, mail, send
from .browser import CountingServer, chromium, console, set_scheme, wait


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def send_timed(port: int, rcpt: str, raw: bytes) -> float:
    """Send over SMTP; the wall-clock time (time.time()) the 250 arrived."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("alice@sender.test")[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(raw)
        stamp = time.time()
        assert code == 250, reply
    return stamp


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def live_state(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "live").get_attribute("data-state") or ""


def rows(driver: WebDriver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#messages a.row")


def subjects(driver: WebDriver) -> list[str]:
    """The subjects listed, top to bottom (read in one go: rows are redrawn live)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .subject')].map((e) => e.textContent)"
    )


def open_inbox(driver: WebDriver, base: str, address: str) -> None:
    driver.get(f"{base}/inbox/{address}")
    wait(driver, lambda d: live_state(d) == "live", what="the stream never opened")


def frame_ready(driver: WebDriver) -> None:
    """Switch into the message's iframe once its document (images included) has loaded."""
    driver.switch_to.default_content()
    frame = wait(driver, lambda d: d.find_element(By.ID, "m-html"))
    driver.switch_to.frame(frame)
    wait(
        driver,
        lambda d: (
            d.execute_script("return location.href.includes('/view/')")
            and d.execute_script("return document.readyState") == "complete"
        ),
        what="the message view never loaded",
    )


# Arriving mail ------------------------------------------------------------------------


def test_take_an_address_and_read_mail_as_it_arrives(stack, browser):
    driver = browser
    driver.get(stack.api.url + "/")
    address = wait(driver, lambda d: text_of(d, "address"), what="no address offered")
    local, _, domain = address.partition("@")
    assert len(local) == 10 and domain in ("example.com", "xn--r8jz45g.jp"), address
    driver.find_element(By.CSS_SELECTOR, "#pick button[type=submit]").click()
    wait(driver, lambda d: "/inbox/" in d.current_url)
    wait(driver, lambda d: live_state(d) == "live")
    empty = text_of(driver, "empty")
    assert f"Waiting for mail to {address}: send something to it" in empty
    # Stamp the document (a reload would lose it) and time the first row.
    driver.execute_script(
        "window.__sameDocument = true;"
        "new MutationObserver(() => { window.__rowAt = window.__rowAt || Date.now(); })"
        ".observe(document.getElementById('messages'), {childList: true});"
    )
    raw = mail(
        address, subject="Your code", text="Your code is 482193", sender="Acme <a@acme.test>"
    )
    sent = send_timed(stack.smtp.port, address, raw)
    wait(driver, lambda d: len(rows(d)) == 1, what="the message never showed up")
    shown_at = driver.execute_script("return window.__rowAt") / 1000
    print(f"\nSMTP 250 -> row in the page: {(shown_at - sent) * 1000:.0f} ms")
    assert driver.execute_script("return window.__sameDocument") is True  # not reloaded
    assert driver.find_element(By.ID, "empty").is_displayed() is False
    [row] = rows(driver)
    assert "unread" in row.get_attribute("class")
    assert row.find_element(By.CLASS_NAME, "from").text == "Acme"
    assert row.find_element(By.CLASS_NAME, "subject").text == "Your code"
    assert row.find_element(By.CLASS_NAME, "intro").text == "Your code is 482193"
    assert row.find_element(By.CLASS_NAME, "time").text
    assert row.find_elements(By.CLASS_NAME, "clip") == []
    row.click()
    wait(driver, lambda d: text_of(d, "m-subject") == "Your code")
    assert text_of(driver, "m-text").strip() == "Your code is 482193"
    assert text_of(driver, "m-from") == "Acme <a@acme.test>"
    assert text_of(driver, "m-to") == address
    assert text_of(driver, "m-date")
    assert not driver.find_element(By.ID, "m-html").is_displayed()
    wait(driver, lambda d: "unread" not in rows(d)[0].get_attribute("class"))


# Hostile mail ------------------------------------------------------------------------------


def payload(name: str) -> str:
    """JavaScript that, if it ever ran, would leave a trace everywhere we look."""
    return (
        f"window.__pwned_{name}=1;try{{top.__pwned_{name}=1}}catch(e){{}};"
        f"parent.postMessage('pwned-{name}','*');console.log('pwned-{name}');"
        f"alert('pwned-{name}')"
    )


def hostile_html(page_url: str, counter: str) -> str:
    return "".join(
        [
            "<p>Dear user, nothing here runs.</p>",
            f"<script>{payload('script')}</script>",
            f'<img src="x" onerror="{payload("onerror")}">',
            f'<img src="{counter}/onerror-remote" onerror="{payload("remote")}">',
            f'<a id="jslink" href="javascript:{payload("jslink")}">a javascript: link</a>',
            f'<a href="data:text/html,&lt;script&gt;{payload("datalink")}&lt;/script&gt;">data</a>',
            f'<iframe src="{page_url}"></iframe>',
            f'<iframe srcdoc="&lt;script&gt;{payload("srcdoc")}&lt;/script&gt;"></iframe>',
            f'<svg xmlns="http://www.w3.org/2000/svg" onload="{payload("svgonload")}">'
            f"<script>{payload('svgscript')}</script></svg>",
            f'<meta http-equiv="refresh" content="0;url={counter}/meta-refresh">',
            f'<meta http-equiv="refresh" content="1;url=javascript:{payload("metajs")}">',
            f'<body onload="{payload("bodyonload")}">',
            f'<details open ontoggle="{payload("ontoggle")}"><summary>s</summary></details>',
            f'<object data="javascript:{payload("object")}"></object>',
            f'<form action="{counter}/form"><button id="go">submit</button></form>',
            f'<div style="background:url({counter}/css-url)">css</div>',
            f'<link rel="stylesheet" href="{counter}/style.css">',
            f'<base href="{counter}/">',
        ]
    )


def traces_in_this_document(driver: WebDriver) -> dict:
    return driver.execute_script(
        "return {"
        "flags: Object.keys(window).filter((k) => k.startsWith('__pwned')),"
        "calls: (window.__calls || []).filter(([, text]) => text.includes('pwned')),"
        "handlers: [...document.querySelectorAll('*')].flatMap((e) =>"
        "  [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith('on')),"
        "}"
    )


def assert_message_frame_runs_nothing(driver: WebDriver) -> None:
    """The open message's iframe: sandboxed (no scripts, no same origin), under
    its own CSP, nothing risky left in it, and its links clicked to no effect
    there; back on the page afterwards."""
    iframe = driver.find_element(By.ID, "m-html")
    sandbox = set((iframe.get_attribute("sandbox") or "").split())
    assert iframe.get_attribute("sandbox") is not None
    assert sandbox <= {"allow-popups", "allow-popups-to-escape-sandbox"}, sandbox
    frame_ready(driver)
    inside = driver.execute_script(
        "return {hooked: window.__hooked === true, origin: window.origin,"
        "text: document.body.innerText,"
        "risky: document.body.querySelectorAll("
        "  'script, iframe, svg, meta, object, embed, form, link, base, [style*=url]').length,"
        "links: [...document.links].map((a) => [a.getAttribute('href'), a.target, a.rel])}"
    )
    assert inside["hooked"] is False, "a script ran in the message's frame"
    assert inside["origin"] == "null", "the message's frame has the page's origin"
    assert "Dear user, nothing here runs." in inside["text"]
    assert inside["risky"] == 0
    for href, target, rel in inside["links"]:
        assert href is None or href.startswith(("http:", "https:")), href
        assert target == "_blank" and {"noopener", "noreferrer"} <= set(rel.split())
    assert traces_in_this_document(driver) == {"flags": [], "calls": [], "handlers": []}
    for link in driver.find_elements(By.TAG_NAME, "a"):  # click what is left
        link.click()
    driver.switch_to.default_content()


def test_hostile_message_runs_nothing(stack, browser):
    driver = browser
    address = "target@example.com"
    page_url = f"{stack.api.url}/inbox/{address}"
    subject = f'<img src=x onerror="{payload("subject")}"><script>{payload("subject2")}</script>'
    name = f'<svg onload="{payload("name")}">, Jr'
    with CountingServer() as counter:
        raw = mail(
            address,
            subject=subject,
            text="see the HTML",
            html=hostile_html(page_url, counter.url),
            sender="Placeholder <evil@sender.test>",
        )
        # A quoted display name on one line (Python's generator would fold it unquoted).
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        raw = raw.replace(b"From: Placeholder", b"From: " + quoted.encode(), 1)
        open_inbox(driver, stack.api.url, address)
        driver.execute_script(  # what a frame posts to the page is recorded too
            "addEventListener('message', (e) => __calls.push(['message', String(e.data)]))"
        )
        send(stack.smtp.port, [address], raw)
        # Its form and script links make it junk (README "Defence"): read it there.
        driver.find_element(By.ID, "junk-view").click()
        wait(driver, lambda d: len(rows(d)) == 1)
        [row] = rows(driver)
        # The page's own HTML escapes: the payloads are text, not elements.
        assert row.find_element(By.CLASS_NAME, "subject").text == subject
        assert row.find_element(By.CLASS_NAME, "from").text == name
        assert driver.find_elements(By.CSS_SELECTOR, "#messages img, #messages script") == []
        assert driver.find_elements(By.CSS_SELECTOR, "#messages svg:not(.clip)") == []
        row.click()
        wait(driver, lambda d: text_of(d, "m-subject") == subject)
        assert text_of(driver, "m-from") == f"{name} <evil@sender.test>"
        assert_message_frame_runs_nothing(driver)
        assert driver.current_url == page_url + "#" + row.get_attribute("data-id")
        assert len(driver.window_handles) == 1
        # The page: nothing ran, nothing was called, and nothing was even tried
        # (a CSP refusal would mean a payload got as far as the browser).
        assert traces_in_this_document(driver) == {"flags": [], "calls": [], "handlers": []}
        logged = [entry["message"] for entry in console(driver)]
        assert not [m for m in logged if "pwned" in m or "Refused" in m], logged
        assert counter.requests == []


# Remote images ---------------------------------------------------------------------------


def test_remote_images_wait_for_the_click(stack, browser):
    driver = browser
    address = "pixels@example.com"
    with CountingServer() as counter:
        html = (
            f'<p>Look: <img src="{counter.url}/pixel.gif" alt="tracker" width="1" height="1"></p>'
            '<p><a href="https://example.net/confirm">confirm</a></p>'
        )
        open_inbox(driver, stack.api.url, address)
        send(stack.smtp.port, [address], mail(address, subject="pixel", html=html))
        wait(driver, lambda d: len(rows(d)) == 1)
        rows(driver)[0].click()
        wait(driver, lambda d: d.find_element(By.ID, "images").is_displayed())
        assert driver.find_element(By.ID, "images-note").is_displayed()
        frame_ready(driver)  # loaded, so any image it had would have been asked for
        assert driver.execute_script("return document.images.length") == 1
        link = driver.find_element(By.TAG_NAME, "a")
        assert link.get_attribute("target") == "_blank"
        assert {"noopener", "noreferrer"} <= set(link.get_attribute("rel").split())
        driver.switch_to.default_content()
        assert counter.requests == [], "a remote image was fetched before the click"
        driver.find_element(By.ID, "images").click()
        wait(driver, lambda d: counter.requests, what="the image was never fetched")
        [(path, headers)] = counter.requests
        assert path == "/pixel.gif"
        assert "Referer" not in headers  # the page's address stays ours
        assert driver.find_element(By.ID, "images").text == "Images loaded"
        frame_ready(driver)
        assert driver.execute_script("return document.images[0].naturalWidth") == 1


# A claimed address ------------------------------------------------------------------------


def test_claimed_address_asks_for_its_password_once(stack, browser):
    driver = browser
    address = "kept@example.com"
    with stack.client() as client:
        account_id, api_token = account(client, address, "right-password")
    send(stack.smtp.port, [address], mail(address, subject="first", html="<p>html body</p>"))
    driver.get(f"{stack.api.url}/inbox/{address}")
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert live_state(driver) == "locked" and rows(driver) == []
    password = driver.find_element(By.ID, "password")
    password.send_keys("wrong-password", Keys.ENTER)
    wait(driver, lambda d: text_of(d, "login-error") == "Wrong password.")
    password.clear()
    password.send_keys("right-password", Keys.ENTER)
    wait(driver, lambda d: len(rows(d)) == 1)
    wait(driver, lambda d: live_state(d) == "live")
    token = driver.execute_script(f"return sessionStorage.getItem('tempmail.token:{address}')")
    assert token and token.count(".") == 2
    rows(driver)[0].click()
    frame_ready(driver)  # the view route took the token from the iframe's URL
    assert driver.execute_script("return document.body.innerText").strip() == "html body"
    driver.switch_to.default_content()
    # Once per session: a reload does not ask again, and the stream carries the token.
    driver.refresh()
    wait(driver, lambda d: live_state(d) == "live")
    assert not driver.find_element(By.ID, "login").is_displayed()
    send(stack.smtp.port, [address], mail(address, subject="second"))
    wait(driver, lambda d: subjects(d) == ["second", "first"])
    # A token that no longer works: asked again, not an error page.
    driver.execute_script(f"sessionStorage.setItem('tempmail.token:{address}', 'x.y.z')")
    driver.refresh()
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert rows(driver) == []
    # The session ends while the page shows the mail (the account is deleted):
    # at the next request it asks again, and none of the mail stays on screen.
    driver.find_element(By.ID, "password").send_keys("right-password", Keys.ENTER)
    wait(driver, lambda d: len(rows(d)) == 2)
    rows(driver)[0].click()
    wait(driver, lambda d: text_of(d, "m-subject") == "second")
    with stack.client(api_token) as client:
        assert client.delete(f"/accounts/{account_id}").status_code == 204
    rows(driver)[1].click()
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert rows(driver) == [] and not driver.find_element(By.ID, "message").is_displayed()


# The stream going away -----------------------------------------------------------------


def test_live_indicator_reconnects_and_catches_up(stack, browser):
    driver = browser
    address = "steady@example.com"
    open_inbox(driver, stack.api.url, address)
    send(stack.smtp.port, [address], mail(address, subject="before"))
    wait(driver, lambda d: len(rows(d)) == 1)
    port = stack.api.port
    stack.api.stop()
    wait(driver, lambda d: live_state(d) == "reconnecting")
    assert text_of(driver, "live") == "reconnecting"
    # Mail keeps arriving (the SMTP service does not need the API).
    send(stack.smtp.port, [address], mail(address, subject="while away"))
    api = ApiServer(stack.database_url, str(stack.api.env["DATA_DIR"]))
    api.port = port
    api.env["API_PORT"] = str(port)
    try:
        api.start()
        wait(driver, lambda d: live_state(d) == "live", what="never reconnected")
        wait(driver, lambda d: subjects(d) == ["while away", "before"], what="gap not caught up")
        send(stack.smtp.port, [address], mail(address, subject="after"))
        wait(driver, lambda d: len(rows(d)) == 3)
    finally:
        api.kill()


# The reader, the keyboard, a phone, the dark ------------------------------------------------


def fill_three(stack, address: str) -> None:
    send(
        stack.smtp.port,
        [address],
        mail(
            address,
            subject="invoice",
            sender="Billing <billing@shop.test>",
            attachments=(("inv.pdf", "application/pdf", b"%PDF" + b"x" * 2044),),
        ),
    )
    send(stack.smtp.port, [address], mail(address, subject="html one", html="<p>rich</p>"))
    send(
        stack.smtp.port,
        [address],
        mail(address, subject="plain one", text="see https://ex.test/a."),
    )


def focused(driver: WebDriver) -> str:
    return driver.execute_script(
        "const e = document.activeElement; return e.id || e.getAttribute('data-id') || e.tagName"
    )


def test_keyboard_reader_buttons(stack, browser):
    driver = browser
    address = "reader@example.com"
    open_inbox(driver, stack.api.url, address)
    fill_three(stack, address)
    wait(driver, lambda d: len(rows(d)) == 3)
    ids = [r.get_attribute("data-id") for r in rows(driver)]
    assert subjects(driver) == ["plain one", "html one", "invoice"]  # newest first
    # Tab order: the brand, Copy, the Junk view's button, the search box, then
    # the rows; Enter opens; arrows move.
    keys = ActionChains(driver)
    order = []
    for _ in range(7):
        keys.send_keys(Keys.TAB).perform()
        order.append(focused(driver))
    assert order == ["A", "copy", "junk-view", "query", *ids], order
    driver.switch_to.active_element.send_keys(Keys.ARROW_UP, Keys.ARROW_UP)
    assert focused(driver) == ids[0]
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(driver, lambda d: text_of(d, "m-subject") == "plain one")
    link = driver.find_element(By.CSS_SELECTOR, "#m-text a")
    assert link.get_attribute("href") == "https://ex.test/a"  # the full stop stays text
    assert link.get_attribute("target") == "_blank"
    assert set(link.get_attribute("rel").split()) == {"noopener", "noreferrer"}
    driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ENTER)
    wait(driver, lambda d: text_of(d, "m-subject") == "invoice")
    # The attachment: name, size, a download of its bytes.
    [item] = driver.find_elements(By.CSS_SELECTOR, "#m-attachments li")
    assert item.find_element(By.TAG_NAME, "a").text == "inv.pdf"
    assert item.find_element(By.CLASS_NAME, "size").text == "2.0 KB"
    href = item.find_element(By.TAG_NAME, "a").get_attribute("href")
    got = httpx.get(href)
    assert got.status_code == 200 and got.content.startswith(b"%PDF") and len(got.content) == 2048
    assert got.headers["content-disposition"].startswith("attachment")
    assert rows(driver)[2].find_elements(By.CLASS_NAME, "clip")
    # Mark unread / read.
    wait(driver, lambda d: "unread" not in rows(d)[2].get_attribute("class"))
    driver.find_element(By.ID, "toggle-read").click()
    wait(driver, lambda d: "unread" in rows(d)[2].get_attribute("class"))
    assert text_of(driver, "toggle-read") == "Mark read"
    with stack.client() as client:
        listed = client.get(f"/mailpit/{address}/api/v1/messages").json()
        assert [m["Read"] for m in listed["messages"]] == [True, False, False]
    # View source.
    driver.find_element(By.ID, "source").click()
    wait(driver, lambda d: "Subject: invoice" in text_of(d, "m-source"))
    driver.find_element(By.ID, "source").click()
    assert not driver.find_element(By.ID, "m-source").is_displayed()
    # Delete: gone from the page and from the mailbox, the others stay.
    driver.find_element(By.ID, "delete").click()
    wait(driver, lambda d: len(rows(d)) == 2)
    assert driver.find_element(By.ID, "reader-empty").is_displayed()
    driver.refresh()
    wait(driver, lambda d: [r.get_attribute("data-id") for r in rows(d)] == ids[:2])


def background_luminance(driver: WebDriver) -> float:
    colour = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(part) for part in colour[colour.index("(") + 1 : -1].split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_phone_width_and_dark_scheme(stack):
    address = "phone@example.com"
    with chromium(390, 844) as driver:
        open_inbox(driver, stack.api.url, address)
        assert background_luminance(driver) > 0.8
        set_scheme(driver, "dark")
        assert background_luminance(driver) < 0.2
        send(stack.smtp.port, [address], mail(address, subject="small screen", html="<p>hi</p>"))
        wait(driver, lambda d: len(rows(d)) == 1)
        reader = driver.find_element(By.ID, "reader")
        assert not reader.is_displayed()  # one column: the list only
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= driver.execute_script("return innerWidth")  # nothing sideways
        rows(driver)[0].click()
        wait(driver, lambda d: d.find_element(By.ID, "reader").is_displayed())
        assert not driver.find_element(By.ID, "list-pane").is_displayed()
        back = driver.find_element(By.ID, "back")
        assert back.is_displayed()
        back.click()
        wait(driver, lambda d: d.find_element(By.ID, "list-pane").is_displayed())
        assert not driver.find_element(By.ID, "reader").is_displayed()

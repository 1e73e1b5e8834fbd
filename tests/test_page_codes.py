"""The inbox page's codes, link and search box in a real headless browser
(Debian's chromium, tests/browser.py), against the real SMTP service and API:
"Copy code" puts the code on the clipboard, "Open link" is an http(s) link
that opens apart (noopener), a hostile link never becomes one, and the
search box filters the list, live as matching mail arrives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .browser import chromium, wait
from .helpers import query
from .test_api_codes import CODE, LINK, code_mail
from .test_page_browser import open_inbox, rows, subjects, text_of, traces_in_this_document


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def open_first(driver: WebDriver, subject: str) -> None:
    wait(driver, lambda d: len(rows(d)) >= 1, what="no message listed")
    rows(driver)[0].click()
    wait(driver, lambda d: text_of(d, "m-subject") == subject)


def clipboard(driver: WebDriver) -> str:
    return driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('failed: ' + e))"
    )


def test_copy_code_and_open_link(stack, browser):
    driver = browser
    address = "codes@example.com"
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": stack.api.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    open_inbox(driver, stack.api.url, address)
    send(stack.smtp.port, [address], code_mail(address))
    open_first(driver, "Your Acme verification code")
    wait(driver, lambda d: d.find_element(By.ID, "m-codes").is_displayed())
    assert driver.find_element(By.CSS_SELECTOR, "#m-codes .code").text == CODE
    button = driver.find_element(By.CSS_SELECTOR, "#m-codes button.copy-code")
    assert button.text == "Copy code"
    button.click()
    wait(driver, lambda d: button.text == "Copied", what="the copy did not happen")
    assert clipboard(driver) == CODE
    wait(driver, lambda d: button.text == "Copy code")  # the label comes back
    link = driver.find_element(By.CSS_SELECTOR, "#m-codes a.open-link")
    assert link.text == "Open link"
    assert link.get_attribute("href") == LINK
    assert link.get_attribute("target") == "_blank"
    assert {"noopener", "noreferrer"} <= set(link.get_attribute("rel").split())


def test_a_hostile_link_or_code_never_becomes_active(stack, browser):
    driver = browser
    address = "hostile-codes@example.com"
    # A javascript: link worded as a verification link is not one (app/codes.py) ...
    html = (
        "<p>Your verification code is 271828.</p>"
        '<a href="javascript:alert(1)//verify?token=Zx81Kq72Lm0aPq">Verify your email</a>'
    )
    send(stack.smtp.port, [address], mail(address, subject="js link", html=html))
    # ... and a row some other writer stored with a hostile link and code is shown inert.
    send(stack.smtp.port, [address], code_mail(address, subject="tampered"))
    query(
        stack.database_url,
        "UPDATE emails SET verify_link = $2, codes = $3 WHERE mailbox_owner = $1 "
        "AND subject = 'tampered'",
        address,
        "data:text/html,<script>alert(1)</script>",
        ['<img src=x onerror="window.__pwned_code=1">'],
    )
    open_inbox(driver, stack.api.url, address)
    wait(driver, lambda d: len(rows(d)) == 2)
    for subject in ("js link", "tampered"):
        row = next(
            r for r in rows(driver) if r.find_element(By.CLASS_NAME, "subject").text == subject
        )
        row.click()
        wait(driver, lambda d, s=subject: text_of(d, "m-subject") == s)
        assert driver.find_elements(By.CSS_SELECTOR, "#m-codes a") == []
        assert driver.find_elements(By.CSS_SELECTOR, "#m-codes img") == []
    assert driver.find_element(By.CSS_SELECTOR, "#m-codes .code").text.startswith("<img")
    assert traces_in_this_document(driver) == {"flags": [], "calls": [], "handlers": []}


def test_search_box_filters_and_updates_live(stack, browser):
    driver = browser
    address = "search@example.com"
    for subject in ("alpha invoice", "beta news", "alpha reminder"):
        send(stack.smtp.port, [address], mail(address, subject=subject))
    open_inbox(driver, stack.api.url, address)
    wait(driver, lambda d: len(rows(d)) == 3)
    box = driver.find_element(By.ID, "query")
    box.send_keys("subject:alpha")
    wait(driver, lambda d: subjects(d) == ["alpha reminder", "alpha invoice"])
    # New mail: a matching one shows up live, one that does not match never does.
    send(stack.smtp.port, [address], mail(address, subject="gamma unrelated"))
    send(stack.smtp.port, [address], mail(address, subject="alpha arrives"))
    wait(driver, lambda d: subjects(d)[:1] == ["alpha arrives"], what="no live match")
    assert subjects(driver) == ["alpha arrives", "alpha reminder", "alpha invoice"]
    box.clear()
    box.send_keys("nothing-matches-this")
    wait(driver, lambda d: d.find_element(By.ID, "no-match").is_displayed())
    assert rows(driver) == []
    box.clear()
    box.send_keys(" ")  # an empty query: the whole inbox again
    wait(driver, lambda d: len(rows(d)) == 5)
    assert "gamma unrelated" in subjects(driver)

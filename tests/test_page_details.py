"""Details a newcomer trips on, with the page and the API: an address on a
domain this server does not receive mail for says so (in the API and on the
page, instead of "waiting" for ever); `accounts add` on such an address
warns; /domains' createdAt is when the domain was added; the claimed
address's password form fits at 1280 px without scrollbars."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .api_fixtures import make_stack, stack
from .api_helpers import ApiServer, account
from .browser import chromium, wait
from .helpers import app_command, eventually, install_schema, query


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium(width=1280, height=800) as driver:
        yield driver


def test_the_api_says_whether_an_address_is_served(stack):
    with stack.client() as client:
        assert client.get("/addresses/Someone@Example.com").json() == {
            "address": "someone@example.com",
            "domain": "example.com",
            "served": True,
        }
        assert client.get("/addresses/x@deep.sub.example.org").json()["served"]  # *.example.org
        assert client.get("/addresses/x@example.org").json()["served"] is False  # not the apex
        assert client.get("/addresses/x@not-served.test").json() == {
            "address": "x@not-served.test",
            "domain": "not-served.test",
            "served": False,
        }
        assert client.get("/addresses/not-an-address").status_code == 404


def test_every_domain_is_served_without_the_whitelist(make_server, database_url, tmp_path):
    make_server()
    api = ApiServer(database_url, str(tmp_path / "data"), use_domain_whitelist="false").start()
    try:
        reply = httpx.get(f"{api.url}/addresses/x@anything.test", timeout=30)
        assert reply.json()["served"] is True
    finally:
        api.kill()


def test_the_page_says_mail_to_a_domain_not_served_is_refused(stack, browser):
    driver = browser
    driver.get(f"{stack.api.url}/inbox/x@not-served.test")
    wait(driver, lambda d: d.find_element(By.ID, "refused").is_displayed())
    text = driver.find_element(By.ID, "refused").text
    assert text.startswith("Mail to x@not-served.test is refused: this server does not "), text
    assert "receive mail for not-served.test." in text
    assert not driver.find_element(By.ID, "empty").is_displayed()  # no "Waiting for mail"
    # A served address waits, as before.
    driver.get(f"{stack.api.url}/inbox/someone@example.com")
    wait(driver, lambda d: d.find_element(By.ID, "empty").is_displayed())
    assert not driver.find_element(By.ID, "refused").is_displayed()


def test_the_password_form_fits_at_1280_px(stack, browser):
    driver = browser
    address = "kept@example.com"
    with stack.client() as client:
        account(client, address, "right-password")
    driver.get(f"{stack.api.url}/inbox/{address}")
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    overflowing = driver.execute_script(
        """
        const found = [];
        for (const node of [document.documentElement, ...document.querySelectorAll('*')]) {
          const style = getComputedStyle(node);
          const scrolls = node === document.documentElement
            || ['auto', 'scroll'].includes(style.overflowX)
            || ['auto', 'scroll'].includes(style.overflowY);
          if (scrolls && (node.scrollWidth > node.clientWidth
                          || node.scrollHeight > node.clientHeight)) {
            found.push((node.id || node.className || node.tagName) + ' '
              + node.scrollWidth + 'x' + node.scrollHeight + ' in '
              + node.clientWidth + 'x' + node.clientHeight);
          }
        }
        return found;
        """
    )
    assert overflowing == []


def test_domains_created_at_is_when_the_domain_was_added(make_stack, database_url):
    stack = make_stack()
    before = datetime.datetime.now(datetime.UTC)
    assert app_command("domains", "add", "new.test", DATABASE_URL=database_url).returncode == 0
    # A row older than the column (made before the upgrade): the upgrade's time.
    query(database_url, "UPDATE domains SET created_at = NULL WHERE domain = 'example.com'")
    [upgraded] = query(database_url, "SELECT applied_at FROM schema_migrations WHERE version = 60")
    [added] = query(database_url, "SELECT created_at FROM domains WHERE domain = 'new.test'")
    assert added[0] >= before - datetime.timedelta(seconds=5)
    with stack.client(Accept="application/json") as client:

        def listed() -> dict[str, str]:
            return {d["domain"]: d["createdAt"] for d in client.get("/domains").json()}

        listed = eventually(lambda: "new.test" in listed() and listed())  # cached up to 10 s
    seconds = {k: datetime.datetime.fromisoformat(v) for k, v in listed.items()}  # mail.tm's
    assert seconds["new.test"] == added[0].replace(microsecond=0)
    assert seconds["example.com"] == upgraded[0].replace(microsecond=0)


def test_accounts_add_warns_when_the_domain_is_not_served(database_url):
    assert app_command("init-db", DATABASE_URL=database_url).returncode == 0
    install_schema(database_url, ("example.com",))
    served = app_command(
        "accounts", "add", "me@example.com", stdin="a-long-password\n", DATABASE_URL=database_url
    )
    assert served.returncode == 0 and served.stderr == "", served.stderr
    refused = app_command(
        "accounts", "add", "me@typo.test", stdin="a-long-password\n", DATABASE_URL=database_url
    )
    assert refused.returncode == 0 and refused.stdout.startswith("added me@typo.test")
    assert refused.stderr == (
        "warning: mail to me@typo.test is refused: typo.test is not a domain of this server "
        "(add it: tempmail domains add typo.test)\n"
    )

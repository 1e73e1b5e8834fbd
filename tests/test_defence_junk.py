"""Junk, not rejection: a message the checks mark junk is stored and read
through both APIs (mail.tm: `junk` and `junkReasons`; Mailpit: the tag
`junk`, `tag:junk` search, our `JunkReasons` on junk mail only), and the
inbox page shows it in its Junk view with its reasons, never in the main
list (Debian's chromium)."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from .api_fixtures import make_stack, stack  # noqa: F401 (fixtures)
from .api_helpers import account, mail, send, wait_messages
from .browser import chromium, wait
from .test_defence_content import PE
from .test_defence_content import mail as with_attachment

REASON = "content: invoice.pdf is executable (application/x-msdownload)"


def send_both(stack, address: str) -> None:  # noqa: F811
    send(stack.smtp.port, [address], mail(address, subject="Your code 123456"))
    junk = with_attachment(attachment=("invoice.pdf", PE))
    junk = junk.replace(b"x@example.com", address.encode())
    send(stack.smtp.port, [address], junk.replace(b"Your documents", b"Pay now"))


def test_apis_return_junk_marked(stack):  # noqa: F811
    address = "reader@example.com"
    with stack.client() as client:
        _, token = account(client, address)
    send_both(stack, address)
    with stack.client(token, Accept="application/json") as client:
        listed = {m["subject"]: m for m in wait_messages(client, 2)}
        assert listed["Pay now"]["junk"] is True
        assert listed["Pay now"]["junkReasons"] == [REASON]
        assert listed["Your code 123456"]["junk"] is False
        full = client.get(f"/messages/{listed['Pay now']['id']}").json()
        assert full["junk"] is True and full["junkReasons"] == [REASON]
    with stack.client() as client:
        base = f"/mailpit/{address}/api/v1"
        client.auth = (address, "secret-pass")
        mailpit = {m["Subject"]: m for m in client.get(f"{base}/messages").json()["messages"]}
        assert mailpit["Pay now"]["Tags"] == ["junk"]
        assert mailpit["Pay now"]["JunkReasons"] == [REASON]
        assert mailpit["Your code 123456"]["Tags"] == []
        assert "JunkReasons" not in mailpit["Your code 123456"]  # Mailpit's own shape
        found = client.get(f"{base}/search", params={"query": "tag:junk"}).json()
        assert [m["Subject"] for m in found["messages"]] == ["Pay now"]
        found = client.get(f"{base}/search", params={"query": "-tag:junk"}).json()
        assert [m["Subject"] for m in found["messages"]] == ["Your code 123456"]
        message = client.get(f"{base}/message/{mailpit['Pay now']['ID']}").json()
        assert message["Tags"] == ["junk"] and message["JunkReasons"] == [REASON]


def subjects(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .subject')].map((e) => e.textContent)"
    )


def test_page_keeps_junk_in_its_own_view(stack):  # noqa: F811
    address = "page@example.com"
    with chromium() as driver:
        driver.get(f"{stack.api.url}/inbox/{address}")
        wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
        send_both(stack, address)  # both arrive live: only one may show
        wait(driver, lambda d: subjects(d) == ["Your code 123456"], what="the inbox row")
        driver.refresh()
        wait(driver, lambda d: subjects(d) == ["Your code 123456"], what="the inbox after reload")
        driver.find_element(By.ID, "junk-view").click()
        wait(driver, lambda d: subjects(d) == ["Pay now"], what="the junk view")
        intro = driver.find_element(By.CSS_SELECTOR, "#messages .intro").text
        assert intro == "Junk: " + REASON
        driver.find_element(By.CSS_SELECTOR, "#messages a.row").click()
        wait(driver, lambda d: d.find_element(By.ID, "m-junk").text == "Junk: " + REASON)
        driver.find_element(By.ID, "junk-view").click()
        wait(driver, lambda d: subjects(d) == ["Your code 123456"], what="back to the inbox")

"""Remake the README's screenshots of the inbox page: `python -m tests.screenshots`.

Starts the SMTP service and the API on a fresh database (TEST_DATABASE_URL's
server, else 127.0.0.1:5432), sends three messages over SMTP, and saves the
inbox and the reader, light and dark, under docs/screenshots/. Run by hand
after a visible change; CI does not run it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium.webdriver.common.by import By

from .api_helpers import ApiServer, mail, send
from .browser import chromium, set_scheme, wait
from .helpers import ROOT, Server, create_database, drop_database, install_schema, url_for

OUT = ROOT / "docs" / "screenshots"
ADDRESS = "k7qmz2xv4d@example.com"

WELCOME_HTML = """\
<div style="max-width:520px;margin:0 auto;font-family:Arial,sans-serif;color:#222">
  <h2 style="color:#0b5cad">Welcome to Example!</h2>
  <p>Thanks for signing up. Confirm your address to finish creating your account:</p>
  <p><a href="https://example.net/confirm?token=7c1e9a" style="display:inline-block;
     padding:10px 18px;background:#0b5cad;color:#fff;border-radius:4px;
     text-decoration:none">Confirm my address</a></p>
  <p>Or paste this link into your browser: https://example.net/confirm?token=7c1e9a</p>
  <img src="https://tracker.example.net/open.gif" width="1" height="1" alt="">
  <p style="color:#777;font-size:12px">You received this because someone signed up
     with this address. Not you? Ignore this mail.</p>
</div>
"""


def fill(port: int) -> None:
    send(
        port,
        [ADDRESS],
        mail(
            ADDRESS,
            subject="Invoice 2026-118",
            sender="Billing <billing@shop.example.net>",
            text="Hello,\n\nyour invoice is attached.\n\nThank you for your order.",
            attachments=(("invoice-2026-118.pdf", "application/pdf", b"%PDF-1.4\n" * 2000),),
        ),
    )
    send(
        port,
        [ADDRESS],
        mail(
            ADDRESS,
            subject="Confirm your address",
            sender="Example <hello@example.net>",
            text="Confirm your address: https://example.net/confirm?token=7c1e9a",
            html=WELCOME_HTML,
        ),
    )
    send(
        port,
        [ADDRESS],
        mail(
            ADDRESS,
            subject="Your sign-in code is 482193",
            sender="Acme Accounts <no-reply@acme.example.org>",
            text=(
                "Your sign-in code is 482193.\n\nIt expires in 10 minutes. If you did not "
                "try to sign in, you can ignore this message."
            ),
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name = create_database()
    url = url_for(name)
    data = Path(f"/tmp/{name}")
    install_schema(url, ("example.com",))
    smtp = Server({"DATABASE_URL": url, "SPOOL_DIR": str(data / "spool"), "AUTH_CHECKS": "off"})
    api = ApiServer(url, str(data / "data"))
    try:
        smtp.start()
        api.start()
        with chromium(1200, 760) as driver:
            driver.get(f"{api.url}/inbox/{ADDRESS}")
            wait(driver, lambda d: d.find_element(By.ID, "live").text == "live")
            fill(smtp.port)
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages li")) == 3)
            for scheme in ("light", "dark"):
                set_scheme(driver, scheme)
                driver.save_screenshot(str(args.out / f"inbox-{scheme}.png"))
            row = driver.find_elements(By.CSS_SELECTOR, "#messages a.row")[1]
            row.click()
            wait(driver, lambda d: d.find_element(By.ID, "m-subject").text.startswith("Confirm"))
            frame = driver.find_element(By.ID, "m-html")
            driver.switch_to.frame(frame)
            wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
            driver.switch_to.default_content()
            for scheme in ("light", "dark"):
                set_scheme(driver, scheme)
                driver.save_screenshot(str(args.out / f"reader-{scheme}.png"))
    finally:
        for process in (api, smtp):
            if process.process is not None:
                process.kill()
        drop_database(name)
        shutil.rmtree(data, ignore_errors=True)
    for path in sorted(args.out.glob("*.png")):
        print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

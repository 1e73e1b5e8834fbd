"""A real headless browser for the inbox page's tests and screenshots: Debian's
chromium driven through its own chromium-driver by selenium (never a
downloaded browser: selenium's driver manager is skipped by naming the
driver), a fresh profile each time, no network but this machine.

`HOOKS` runs before any script of every document whose scripts may run
(devtools adds it): it records alert/confirm/prompt/print and console calls
in `window.__calls`, and sets `window.__hooked`. A frame where it never ran
is a frame where no script runs.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)

HOOKS = """
window.__hooked = true;
window.__calls = [];
for (const name of ['alert', 'confirm', 'prompt', 'print']) {
  window[name] = (...args) => { window.__calls.push([name, args.map(String).join(' ')]); };
}
for (const name of ['log', 'info', 'warn', 'error', 'debug']) {
  const original = console[name].bind(console);
  console[name] = (...args) => {
    window.__calls.push(['console.' + name, args.map(String).join(' ')]);
    original(...args);
  };
}
"""

T = TypeVar("T")


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return (
                f"{path} is missing: install Debian's chromium and chromium-driver "
                "(scripts/test does, as root)"
            )
    return None


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 800, scheme: str = "light") -> Iterator[WebDriver]:
    problem = missing()
    assert problem is None, problem
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS})
        set_scheme(driver, scheme)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def set_scheme(driver: WebDriver, scheme: str) -> None:
    """Emulate prefers-color-scheme: light or dark."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


def wait(
    driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 30, what: str = ""
) -> T:
    """The first truthy value of `condition`, polled every 20 ms (generous timeout:
    a busy machine must not fail a test; speed is measured, not asserted)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition, what)


def console(driver: WebDriver) -> list[dict[str, Any]]:
    """The browser's console since the last call (every frame's)."""
    return list(driver.get_log("browser"))


# A 1x1 transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


class CountingServer:
    """An HTTP server on 127.0.0.1 that answers every GET with a pixel and
    remembers each request (path and headers): a remote image's host."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append((self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(PIXEL)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def stopwatch() -> Callable[[], float]:
    start = time.monotonic()
    return lambda: time.monotonic() - start

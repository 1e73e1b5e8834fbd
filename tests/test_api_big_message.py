"""Issue 21 item 3: one stored message of very many MIME parts must not hold
the API for everyone else, and what it lists is capped.

The message goes through the real SMTP service; the API parses it off its
event loop (mimework.py), in a worker process, and only as far as
mime.MAX_PARTS parts. The test holds that parse in progress: once a MIME
worker process is seen working after the big GET was sent, the workers are
stopped (SIGSTOP) until the test lets them go on. Meanwhile another client
reads the page's static file and a small message: both must be answered,
with the big request still waiting for its parse. No clock is read: before
the fix the parse ran on the loop (no worker ever worked and the big answer
came first); a loop that waited on the worker would never answer them.
bench/api_big.py measures the figures.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from app.api import mime

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .helpers import eventually, session_pids
from .test_api_mailpit import BASE, wait_total

PARTS = 20 * mime.MAX_PARTS


def many_parts(count: int) -> bytes:
    """A multipart/mixed message of `count` small named attachments (2 MB for 20,000)."""
    lines = [b"From: s@sender.test", b"To: box@example.com", b"Subject: many parts",
             b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="b"', b""]  # fmt: skip
    for n in range(count):
        lines += [b"--b", b'Content-Type: application/octet-stream; name="f%d.bin"' % n, b"", b"x"]
    return b"\r\n".join([*lines, b"--b--", b""])


def mime_workers(api: int) -> list[int]:
    """The MIME worker processes of the API process `api` (mimework.py's pool
    starts them with multiprocessing's spawn)."""
    found = []
    for pid in session_pids(api):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def cpu_ticks(pid: int) -> int:
    """User and system CPU time process `pid` has used, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def stop_workers_once_busy(api: int, idle: dict[int, int], request: threading.Thread) -> list[int]:
    """SIGSTOP the API's MIME workers as soon as one of them has used CPU beyond
    `idle` (the ticks each had before `request` was sent): the parse is under way.
    Returns the stopped pids; fails if `request` was answered first."""
    while request.is_alive():
        workers = mime_workers(api)
        if any(cpu_ticks(pid) > idle.get(pid, 0) for pid in workers):
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            return workers
        time.sleep(0.001)
    worked = {pid: cpu_ticks(pid) - ticks for pid, ticks in idle.items()}
    raise AssertionError(f"answered before a MIME worker process held its parse: {worked}")


def test_a_message_of_many_parts_holds_no_one_else(stack):
    send(stack.smtp.port, ["box@example.com"], many_parts(PARTS))
    send(stack.smtp.port, ["box@example.com"], mail("box@example.com", subject="small"))
    with stack.client() as client:
        ids = {m["Subject"]: m["ID"] for m in wait_total(client, 2)["messages"]}
    assert stack.api.process is not None
    api = stack.api.process.pid
    idle = {pid: cpu_ticks(pid) for pid in eventually(lambda: mime_workers(api))}

    big: dict[str, httpx.Response] = {}

    def get_big() -> None:
        with httpx.Client(base_url=stack.api.url, timeout=120) as own:
            big["answer"] = own.get(f"{BASE}/message/{ids['many parts']}")

    thread = threading.Thread(target=get_big)
    thread.start()
    stopped: list[int] = []
    try:
        stopped = stop_workers_once_busy(api, idle, thread)
        with stack.client() as client:
            for path in ("/static/app.js", f"{BASE}/message/{ids['small']}"):
                assert client.get(path).status_code == 200, path
        assert thread.is_alive(), "the big message was answered while its parse was held"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        thread.join()
    answer = big["answer"]
    assert answer.status_code == 200

    # The listing stops at the cap; a listed part is served, one past it is not.
    attachments = answer.json()["Attachments"]
    assert len(attachments) == mime.MAX_PARTS
    assert attachments[-1]["FileName"] == f"f{mime.MAX_PARTS - 1}.bin"
    with stack.client() as client:
        part = f"{BASE}/message/{ids['many parts']}/part"
        assert client.get(f"{part}/{mime.MAX_PARTS}").status_code == 200
        assert client.get(f"{part}/{mime.MAX_PARTS + 1}").status_code == 404
        again = client.get(f"{BASE}/message/{ids['many parts']}")  # the parse, reused
        assert again.json()["Attachments"] == attachments

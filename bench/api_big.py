"""`python -m bench.api_big`: one huge stored message against everyone else's requests.

Issue 21 item 3: a stored message of 150,000 MIME parts (18 MB) opened
through the Mailpit API while another client reads the page's static file
and a small message. The SMTP service (instant mode) stores it, then for
each of `--rounds` rounds: GET message/{ID} of the big one and, while it
is in flight, the other client's requests one after another. Reported:
the big GET's time, how many of the other requests were answered while it
ran, and the slowest of them (what one user's message costs every other
user). Round 1 is cold (no parse cached, worker processes not started);
the next rounds reuse the parse.

Run it on two trees (before and after a change) for a before/after figure;
the machine is shared, so compare within one run of each.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import time

import httpx
import uvloop

from .api import start_api
from .targets import start_service

ADDRESS = "big@example.com"
BASE = f"/mailpit/{ADDRESS}/api/v1"


def huge(parts: int) -> bytes:
    """A multipart/mixed message of `parts` small named attachments."""
    lines = [
        b"From: Sender <s@sender.test>",
        f"To: {ADDRESS}".encode(),
        b"Subject: many parts",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b"',
        b"",
    ]
    for n in range(parts):
        lines += [
            b"--b",
            b'Content-Type: application/octet-stream; name="f%d.bin"' % n,
            b"",
            b"x" * 40,
        ]
    return b"\r\n".join([*lines, b"--b--", b""])


def send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.sendmail("s@sender.test", [ADDRESS], raw)


async def listed(client: httpx.AsyncClient, subjects: set[str], timeout: float) -> dict[str, str]:
    """Subject -> ID, once every one of `subjects` is stored."""
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get(f"{BASE}/messages")).json()
        found = {m["Subject"]: m["ID"] for m in body["messages"]}
        if subjects <= set(found):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"stored: {sorted(found)}")
        await asyncio.sleep(0.2)


async def one_round(client: httpx.AsyncClient, big: str, small: str) -> dict[str, float]:
    other: list[float] = []
    started = time.perf_counter()
    task = asyncio.ensure_future(client.get(f"{BASE}/message/{big}", timeout=300))
    while not task.done():
        for path in ("/static/app.js", f"{BASE}/message/{small}"):
            t = time.perf_counter()
            answer = await client.get(path)
            if not task.done():
                other.append((time.perf_counter() - t) * 1000)
            assert answer.status_code == 200, answer.status_code
    answer = await task
    big_ms = (time.perf_counter() - started) * 1000
    attachments = len(answer.json()["Attachments"])
    return {"big_ms": big_ms, "during": len(other), "worst_ms": max(other, default=0.0),
            "listed": attachments}  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    smtp = await start_service("instant", 1)
    assert smtp.database_url is not None
    api = await start_api("starlette", smtp.database_url)
    try:
        raw = huge(args.parts)
        print(f"message: {args.parts} parts, {len(raw) / 1e6:.1f} MB")
        await asyncio.to_thread(send, smtp.port, raw)
        small = b"From: s@sender.test\r\nTo: big@example.com\r\nSubject: small\r\n\r\nhi\r\n"
        await asyncio.to_thread(send, smtp.port, small)
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            ids = await listed(client, {"many parts", "small"}, timeout=600)
            print(
                "| round | big GET ms | other requests answered meanwhile | slowest ms | listed |"
            )
            print("|---|---|---|---|---|")
            for n in range(1, args.rounds + 1):
                got = await one_round(client, ids["many parts"], ids["small"])
                print(f"| {n} | {got['big_ms']:.0f} | {got['during']} | {got['worst_ms']:.1f} "
                      f"| {got['listed']} |")  # fmt: skip
    finally:
        await api.stop()
        await smtp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""`python -m bench.api`: the read side under load, in one run, one table.

For each framework (our Starlette + uvicorn app, and the same two routes on
aiohttp: bench/api_aiohttp.py), on a fresh database with the real SMTP
service beside it:
  idle     list (GET /messages, 30 of 100) and read (GET /messages/{id}) p50/p99,
           4 clients sharing 100 requests/s (paced, open loop), no mail arriving;
  loaded   the same while SMTP mail arrives at 200 msg/s, all of it to one
           account with an open Mercure stream: 250-to-event p50/p99 (the
           time from the SMTP reply to the event on the stream);
  streams  (ours) API memory with 1,000 open streams, and the fan-out of one
           message to all of them.
Everything runs on this machine (2 cores: load generators, both services and
PostgreSQL share them). `--smoke` runs seconds-long versions (no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import uvloop

from app.api import access, queries, queries_accounts
from app.policy import normalize_address

from . import procstat
from .client import Pacer, Sent, percentile, session, stuffed, typical
from .report import cell, markdown_table
from .targets import ROOT, Target, free_port, start_service

SECRET = "bench-secret-" + "x" * 32
READER = "reader@example.com"
STREAMED = "stream@example.com"


@dataclasses.dataclass
class Row:
    api: str
    load: str
    list50: float = float("nan")
    list99: float = float("nan")
    read50: float = float("nan")
    read99: float = float("nan")
    rps: float = float("nan")
    event50: float = float("nan")
    event99: float = float("nan")
    events: str = ""
    rss_mib: str = ""


COLUMNS = (
    "api", "SMTP load", "list p50 ms", "list p99 ms", "read p50 ms", "read p99 ms", "req/s",
    "250→event p50 ms", "250→event p99 ms", "events", "API RSS MiB",
)  # fmt: skip


def table(rows: list[Row]) -> str:
    return "\n" + markdown_table(COLUMNS, (
        (r.api, r.load, cell(r.list50), cell(r.list99), cell(r.read50), cell(r.read99),
         cell(r.rps).split(".")[0], cell(r.event50), cell(r.event99), r.events, r.rss_mib)
        for r in rows
    ))  # fmt: skip


@dataclasses.dataclass
class Api:
    name: str
    process: subprocess.Popen[bytes]
    url: str

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 30)


async def start_api(kind: str, database_url: str) -> Api:
    port = free_port()
    module = "app" if kind == "starlette" else "bench.api_aiohttp"
    command = [sys.executable, "-m", module] + (
        ["--env-file", "/dev/null", "api"] if kind == "starlette" else []
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "DATABASE_URL": database_url,
        "API_PORT": str(port),
        "API_SECRET": SECRET,
        "API_RATE_LIMIT": "100000",
        "LOG_LEVEL": "warning",
        "DATA_DIR": "/tmp/bench-api-data",
    }
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.get(url + "/messages")
                return Api(kind, process, url)
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} API did not start") from None
                await asyncio.sleep(0.1)


async def make_account(database_url: str, address: str) -> tuple[str, str]:
    pool = await queries.create_pool(database_url, 1)
    try:
        password_hash = await access.hash_password("bench-password")
        # Made as `accounts add` makes them: by the operator, not through the API.
        row = await queries_accounts.create_account(
            pool, normalize_address(address), password_hash, by_operator=True
        )
        assert row is not None
        token = access.issue_token(SECRET, row["id"], row["address"], access.token_generation(row))
        return str(row["id"]), token
    finally:
        await pool.close()


async def fill(target: Target, count: int) -> None:
    bodies = [(f"fill-{n}", stuffed(typical(f"fill-{n}"))) for n in range(count)]
    await session(target.port, bodies, [], rcpt=READER.encode())


async def reader_loop(
    api: Api, token: str, until: float, list_ms: list[float], read_ms: list[float], pacer: Pacer
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/ld+json"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
        ids: list[str] = []
        n = 0
        while time.perf_counter() < until:
            await pacer.wait()
            started = time.perf_counter()
            if n % 2 == 0 or not ids:
                listed = await client.get("/messages")
                list_ms.append((time.perf_counter() - started) * 1000)
                ids = [m["id"] for m in listed.json()["hydra:member"]]
            else:
                answer = await client.get(f"/messages/{ids[n % len(ids)]}")
                read_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            n += 1


async def read_stream(
    client: httpx.AsyncClient,
    api: Api,
    topic: str,
    token: str | None,
    arrivals: dict[str, float],
    ready: asyncio.Event,
) -> None:
    params = {"topic": topic}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = api.url + "/.well-known/mercure"
    async with client.stream("GET", url, params=params, headers=headers) as response:
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("@type") == "Message":
                    arrivals[data["subject"]] = time.time()


def stream_client() -> httpx.AsyncClient:
    """One client (one connection pool) for every stream of a run."""
    limits = httpx.Limits(max_connections=5000, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=None, limits=limits)


@dataclasses.dataclass
class FrameworkRun:
    """One framework's API beside the SMTP service, its two accounts, and the load offered."""

    kind: str
    target: Target
    api: Api
    streams: httpx.AsyncClient
    reader: str  # the reading account's token
    streamed_id: str
    streamed: str  # the streamed account's token
    seconds: float
    rate: float
    reads: float


async def framework_rows(kind: str, seconds: float, rate: float, reads: float) -> list[Row]:
    target = await start_service("durable", 1)
    api = await start_api(kind, target.database_url or "")
    streams = stream_client()
    rows = []
    try:
        _, reader = await make_account(target.database_url or "", READER)
        streamed_id, streamed = await make_account(target.database_url or "", STREAMED)
        await fill(target, 100)
        run = FrameworkRun(
            kind, target, api, streams, reader, streamed_id, streamed, seconds, rate, reads
        )
        for load in ("none", f"{rate:g} msg/s"):
            rows.append(await load_row(run, load))
        if kind == "starlette":
            rows.append(await streams_row(streams, api, target, 1000 if seconds > 3 else 50))
    finally:
        await streams.aclose()
        await api.stop()
        await target.stop()
    return rows


async def load_row(run: FrameworkRun, load: str) -> Row:
    """Readers for `run.seconds`, with SMTP mail to the streamed account unless
    `load` is "none"; on Starlette, that account's stream open throughout."""
    list_ms: list[float] = []
    read_ms: list[float] = []
    arrivals: dict[str, float] = {}
    sent: list[Sent] = []
    stream_task = await open_stream(run, arrivals) if run.kind == "starlette" else None
    until = time.perf_counter() + run.seconds
    # Four readers sharing one paced budget (an open-loop load: latency,
    # not how many requests a saturated server queues).
    budget = Pacer(run.reads)
    readers = [reader_loop(run.api, run.reader, until, list_ms, read_ms, budget) for _ in range(4)]
    mail = mail_sessions(run, sent) if load != "none" else []
    started = time.perf_counter()
    await asyncio.gather(*readers, *mail)
    elapsed = time.perf_counter() - started
    if stream_task is not None:
        deadline = time.perf_counter() + 10
        while len(arrivals) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        stream_task.cancel()
    latencies = [(arrivals[s.marker] - s.acked_at) * 1000 for s in sent if s.marker in arrivals]
    return Row(
        api=run.kind,
        load=load,
        list50=percentile(list_ms, 0.5),
        list99=percentile(list_ms, 0.99),
        read50=percentile(read_ms, 0.5),
        read99=percentile(read_ms, 0.99),
        rps=(len(list_ms) + len(read_ms)) / elapsed,
        event50=percentile(latencies, 0.5),
        event99=percentile(latencies, 0.99),
        events=f"{len(latencies)}/{len(sent)}" if stream_task else "",
        rss_mib=str(procstat.memory_kib(run.api.process.pid, "VmRSS") // 1024),
    )


async def open_stream(run: FrameworkRun, arrivals: dict[str, float]) -> asyncio.Task[None]:
    """The streamed account's Mercure stream, open (read in a task) when this returns."""
    ready = asyncio.Event()
    topic = f"/accounts/{run.streamed_id}"
    task = asyncio.create_task(
        read_stream(run.streams, run.api, topic, run.streamed, arrivals, ready)
    )
    await ready.wait()
    return task


def mail_sessions(run: FrameworkRun, sent: list[Sent]) -> list[Coroutine[Any, Any, int]]:
    """Ten SMTP sessions sharing `run.rate` msg/s for `run.seconds`, to the streamed account."""
    count = int(run.rate * run.seconds)
    bodies = [(f"ev-{n}", stuffed(typical(f"ev-{n}"))) for n in range(count)]
    pacer = Pacer(run.rate)
    return [
        session(run.target.port, bodies[i::10], sent, pacer, STREAMED.encode()) for i in range(10)
    ]


async def streams_row(client: httpx.AsyncClient, api: Api, target: Target, count: int) -> Row:
    """API memory with `count` open streams, and one message fanned out to all."""
    before = procstat.memory_kib(api.process.pid, "VmRSS")
    topic = "/addresses/crowd@example.com"
    arrivals: list[dict[str, float]] = [{} for _ in range(count)]
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(read_stream(client, api, topic, None, arrivals[n], readies[n]))
        for n in range(count)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(1)  # let the server settle before reading its memory
    after = procstat.memory_kib(api.process.pid, "VmRSS")
    sent: list[Sent] = []
    await session(target.port, [("crowd", stuffed(typical("crowd")))], sent,
                  rcpt=b"crowd@example.com")  # fmt: skip
    deadline = time.perf_counter() + 30
    while sum("crowd" in a for a in arrivals) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    reached = [a["crowd"] for a in arrivals if "crowd" in a]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    spread = [(t - sent[0].acked_at) * 1000 for t in reached]
    return Row(
        api="starlette",
        load=f"{count} open streams, 1 message to all",
        event50=percentile(spread, 0.5),
        event99=percentile(spread, 0.99),
        events=f"{len(reached)}/{count}",
        rss_mib=f"{before // 1024} → {after // 1024}",
    )


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for kind in ("starlette", "aiohttp"):
        rows += await framework_rows(kind, args.seconds, args.rate, args.reads)
        print(table(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, for CI")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=200.0, help="SMTP msg/s when loaded")
    parser.add_argument("--reads", type=float, default=100.0, help="API requests/s offered")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rate = 2.0, 50.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = uvloop.run(run(args))
    print(table(rows))


if __name__ == "__main__":
    main()

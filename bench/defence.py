"""The inbound defence's cost (issue 23), as ratios against a baseline
measured in the same run:

- CPU per message of the service with every built-in check on (DNSBL and
  DNSWL against a local zone, rate limits enforced with limits nobody
  reaches, five rules of every kind, content checks) vs all off, on the
  corpus mix over 10 connections paced at 150 msg/s (rounds alternate
  off/on; the lowest of each kept, as a shared machine only ever adds);
- the 250 p99 (end of DATA to the reply) and the whole transaction (connect
  to 250) at 200 msg/s, one message per connection from 200 loopback
  addresses (each connect starts DNSBL lookups), DNSBL on vs off;
- rspamd's cost apart: CPU per message (ours and rspamd's) and the 250 p99
  with SPAM_SCANNER=rspamd vs none (durable mode: the 250 waits for the scan).

    python -m bench.defence [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from tests.helpers import free_port
from tests.scanners import rspamd_config

from . import procstat
from .client import Pacer, percentile, stuffed, typical
from .scenarios import corpus_bodies, load, paced, throughput
from .targets import Target, bench_dns, sql, start_service

UNREACHED = "100000000/minute"
OFF = {"dnsbl_checks": "off", "rate_limits": "off", "rules_checks": "off", "content_checks": "off"}
ON = {
    "dnsbl_checks": "record",
    "dnsbl_zones": "bl.bench*2,bl2.bench",
    "dnswl_zones": "wl.bench",
    "rate_limits": "enforce",
    **{
        f"rate_{name}": UNREACHED
        for name in ("global", "per_network", "per_sender_domain", "per_recipient_domain")
    },
    "rate_per_mailbox": UNREACHED,
    "rules_checks": "enforce",
    "content_checks": "record",
}
RULES = (
    "INSERT INTO rules (sender, action) VALUES ('*@never.bench', 'reject')",
    "INSERT INTO rules (recipient, action) VALUES ('nobody@example.com', 'reject')",
    "INSERT INTO rules (client, action) VALUES ('192.0.2.0/24', 'junk')",
    "INSERT INTO rules (header_name, header_regex, action) VALUES ('x-mailer', '^Blaster', 'junk')",
    "INSERT INTO rules (subject_regex, size_min, action) VALUES ('(?i)winner', 1000, 'junk')",
)


async def started(settings: dict[str, str], ack_mode: str = "instant") -> Target:
    target = await start_service(ack_mode, 1, "app", False, **settings)
    if settings.get("rules_checks") == "enforce":
        for statement in RULES:
            await sql(target.database_url or "", statement)
        await sql(target.database_url or "", "SELECT pg_notify('tempmail_lists', 'rules')")
    return target


async def cpu_per_message(target: Target, count: int, rate: float) -> float:
    """The service's CPU ms per message for `count` corpus messages sent at
    `rate` (paced: the writer batches alike with the checks on and off,
    where a flood's batch sizes would follow the machine's load)."""
    before = procstat.total_cpu(target.pids())
    results, errors, _ = await load(target, corpus_bodies(count), 10, rate)
    if errors:
        raise RuntimeError(f"{errors} errors")
    return procstat.cpu_delta(before, target.pids()) * 1000 / len(results)


async def cpu_rows(count: int, rounds: int) -> list[str]:
    """CPU per message, all built-in checks on vs off."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, settings in (("off", OFF), ("on", ON)):
            target = await started(settings)
            cpu_ms = await cpu_per_message(target, count, 150)
            await target.stop()
            best[name] = min(best.get(name, float("inf")), cpu_ms)
    ratio = best["on"] / best["off"]
    return [
        f"CPU per message, built-in checks off: {best['off']:.3f} ms",
        f"CPU per message, built-in checks on:  {best['on']:.3f} ms  "
        f"ratio {ratio:.3f} (target <= 1.15)",
    ]


async def one_message(port: int, source: str, body: bytes) -> tuple[float, float, int]:
    """(250 latency, connect-to-250 time, code) of one message on a new connection."""
    begun = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        for command in (b"", b"EHLO bench.test\r\n", b"MAIL FROM:<b@sender.test>\r\n"):
            writer.write(command)
            while (await reader.readline())[3:4] == b"-":
                pass
        writer.write(b"RCPT TO:<u@example.com>\r\nDATA\r\n")
        await reader.readline(), await reader.readline()
        writer.write(body)
        sent = time.perf_counter()
        code = int((await reader.readline())[:3])
        done = time.perf_counter()
        writer.write(b"QUIT\r\n")
        return done - sent, done - begun, code
    finally:
        writer.close()


async def paced_connections(target: Target, rate: float, seconds: float) -> list[str]:
    """p50/p99 of the 250 and of the whole transaction, one message per connection."""
    pacer, results, tasks = Pacer(rate), [], []
    sources = itertools.cycle(f"127.0.{n // 250}.{n % 250 + 2}" for n in range(200))
    body = stuffed(typical(f"d{uuid.uuid4().hex[:6]}"))

    async def one(source: str) -> None:
        try:
            results.append(await one_message(target.port, source, body))
        except OSError:
            results.append((float("nan"), float("nan"), 0))

    for _ in range(int(rate * seconds)):
        await pacer.wait()
        tasks.append(asyncio.ensure_future(one(next(sources))))
    await asyncio.gather(*tasks)
    acks = [r[0] * 1000 for r in results if r[2] == 250]
    whole = [r[1] * 1000 for r in results if r[2] == 250]
    errors = len(results) - len(acks)
    return [
        f"250 p50 {percentile(acks, 0.5):.2f} p99 {percentile(acks, 0.99):.2f} ms; "
        f"connect-to-250 p50 {percentile(whole, 0.5):.2f} p99 {percentile(whole, 0.99):.2f} ms; "
        f"{errors} errors"
    ]


# A DNS server of its own process, as a real resolver is: in the bench's
# process it would starve behind the load generator and time out.
DNS_PROCESS = (
    "import sys, time; from tests.dnsserver import DnsServer; "
    "s = DnsServer({('250.0.0.127.bl.bench', 'A'): ['127.0.0.2']}); "
    "print(s.address, flush=True); sys.stdin.read()"
)


async def dnsbl_rows(rate: float, seconds: float) -> list[str]:
    server = subprocess.Popen(
        [sys.executable, "-c", DNS_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        return await dnsbl_lines(rate, seconds, address)
    finally:
        server.kill()
        server.wait()


async def dnsbl_lines(rate: float, seconds: float, dns: str) -> list[str]:
    lines = []
    dnsbl = {k: ON[k] for k in ON if "dns" in k}
    for name, settings in (("DNSBL off", {}), ("DNSBL on", dnsbl)):
        target = await started({**settings, "dns_resolver": dns}, "durable")
        measured = await paced_connections(target, rate, seconds)
        lines.append(f"{name} at {rate:.0f} msg/s, a connection each: {measured[0]}")
        row = await paced(target, rate, seconds)  # 20 sessions kept open, as bench's own row
        lines.append(
            f"{name} at {rate:.0f} msg/s, 20 sessions: 250 p50 {row.p50:.2f} p99 {row.p99:.2f} ms; "
            f"{row.errors} errors"
        )
        await target.stop()
    return lines


async def listening(port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.5)
    raise RuntimeError(f"rspamd did not listen on {port}")


async def rspamd_rows(count: int, rate: float, seconds: float) -> list[str]:
    """rspamd's cost: CPU per message (ours + rspamd's) and the durable 250 p99."""
    root = Path(tempfile.mkdtemp(prefix="bench-rspamd-"))
    port = free_port()
    command = ["rspamd", "-f", "-i", "-u", "root", "-g", "root"]
    rspamd = subprocess.Popen(
        command + rspamd_config(root, port, bench_dns()[0].address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    lines = []
    try:
        await listening(port)
        scanner = {"spam_scanner": f"rspamd://127.0.0.1:{port}", "spam_timeout": "30"}
        for name, settings in (("no scanner", {}), ("rspamd", scanner)):
            target = await started(settings, "durable")
            scanner_before = procstat.total_cpu(procstat.family(rspamd.pid))
            row = await throughput(target, corpus_bodies(count), 10)
            scanner_cpu = procstat.cpu_delta(scanner_before, procstat.family(rspamd.pid))
            scanner_ms = scanner_cpu * 1000 / count
            paced = await paced_connections(target, rate, seconds)
            await target.stop()
            lines.append(
                f"{name}: CPU per message ours {row.cpu_ms:.3f} ms + scanner {scanner_ms:.3f} ms; "
                f"durable {rate:.0f} msg/s " + paced[0]
            )
    finally:
        rspamd.terminate()
        rspamd.wait(30)
    return lines


async def run(args: argparse.Namespace) -> list[str]:
    dns = bench_dns()[0]
    dns.zone.records[("250.0.0.127.bl.bench", "A")] = ["127.0.0.2"]  # one client listed
    count, rounds = (300, 1) if args.smoke else (3000, 3)
    seconds = 2 if args.smoke else 20
    lines = []
    if "cpu" in args.only:
        lines += await cpu_rows(count, rounds)
    if "dnsbl" in args.only:
        lines += await dnsbl_rows(200, seconds)
    if "rspamd" in args.only:
        lines += await rspamd_rows(count // 3, 50, seconds)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    parser.add_argument(
        "--only", default="cpu,dnsbl,rspamd", help="comma-separated: cpu, dnsbl, rspamd"
    )
    for line in uvloop.run(run(parser.parse_args())):
        print(line)


if __name__ == "__main__":
    main()

"""`python -m bench`: our service against an aiosmtpd null sink, same run, one table.

Scenarios (each target started fresh, each service on a fresh database):
  throughput   saturating load: 50 sessions of 4 KB messages (and a corpus mix)
  paced        200 msg/s: DATA-end-to-250 latency and 250-to-committed-row lag
  memory       1,000 idle connections plus a steady load; 10,000 connections
  large        10 x 20 MB messages while 20 small sessions run
  connections  10,000 concurrent connections
  workers      WORKERS=2 against a two-process null sink
  metrics      the same load with the metric updates on and off (A/B/A/B)
  auth         DKIM-signed mail with AUTH_CHECKS=record and off (A/B/A/B, instant and durable)
Every service resolves through a local DNS server (bench/README.md) that
serves SPF, DKIM and DMARC records for the bench's sender domain.
`--smoke` runs tiny versions of the first two, for CI (no thresholds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys

import uvloop

from . import mta, scaling
from .client import stuffed, typical
from .rows import Row, table
from .scenarios import (
    CORPUS,
    corpus_bodies,
    large,
    many_connections,
    memory,
    paced,
    throughput,
)
from .targets import ROOT, Target, signed_typical, start_service, start_sink

RESULTS = ROOT / "bench" / "results"

SCENARIOS = (
    "mta",
    "throughput",
    "paced",
    "memory",
    "large",
    "connections",
    "workers",
    "metrics",
    "auth",
    "growth",
    "sizes",
    "recipients",
    "memory25",
    "storage",
)


async def fresh(kind: str, scenario, *args: object) -> Row:  # type: ignore[no-untyped-def]
    """Run `scenario` on a target started for it alone (memory is not shared)."""
    target = await (start_sink(1) if kind == "sink" else start_service("instant", 1))
    try:
        return await scenario(target, *args)
    finally:
        await target.stop()


@dataclasses.dataclass
class Workload:
    """What the throughput rows send, and the null sink's rates (by worker
    count and body kind) that the services' stored rates are divided by."""

    args: argparse.Namespace
    typical_bodies: list[tuple[str, bytes]]
    mix: list[tuple[str, bytes]]
    baselines: dict[tuple[int, str], float] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, args: argparse.Namespace) -> Workload:
        count = args.messages
        typical_bodies = [(f"t{n}", stuffed(typical(f"t{n}"))) for n in range(count)]
        mix = corpus_bodies(count // 2) if CORPUS.is_dir() and not args.smoke else []
        return cls(args, typical_bodies, mix)

    async def measure(self, target: Target, workers: int) -> list[Row]:
        """4 KB and corpus-mix throughput rows (no corpus mix for durable)."""
        rows = []
        for label, bodies in (("4KB", self.typical_bodies), ("corpus mix", self.mix)):
            if not bodies or (label == "corpus mix" and "durable" in target.name):
                continue
            row = await throughput(target, bodies, self.args.sessions, label)
            if target.database_url is None:
                self.baselines[workers, label] = row.accepted_rate
            elif (workers, label) in self.baselines:
                row.ratio = row.stored_rate / self.baselines[workers, label]
            rows.append(row)
        return rows


async def mta_rows(messages: int) -> list[Row]:
    """The headline: smtp-source against the null sink, then our service with defaults."""
    sink = await start_sink(1)
    baseline = await mta.run(sink, "smtp-source 4KB 1 msg/conn", messages)
    await sink.stop()
    service = await start_service(None, 1, defaults=True)
    row = await mta.run(service, "smtp-source 4KB 1 msg/conn", messages)
    await service.stop()
    row.ratio = row.stored_rate / baseline.stored_rate
    row.cpu_ratio = row.cpu_ms / baseline.cpu_ms
    return [baseline, row]


async def throughput_and_paced_rows(work: Workload, chosen: set[str]) -> list[Row]:
    """Null sink, then our service in instant and in durable mode, one target each."""
    rows: list[Row] = []
    args = work.args
    for ack_mode in (None, "instant", "durable"):
        target = await (start_sink(1) if ack_mode is None else start_service(ack_mode, 1))
        if "throughput" in chosen:
            rows += await work.measure(target, 1)
        if "paced" in chosen:
            rows.append(await paced(target, args.rate, args.seconds))
        await target.stop()
    return rows


async def fresh_pair_rows(chosen: set[str]) -> list[Row]:
    """Memory, large messages and connections: sink and service, each started for one row."""
    rows: list[Row] = []
    kinds = ("sink", "service")
    if "memory" in chosen:
        rows += [await fresh(kind, memory, 1000) for kind in kinds]
    if "large" in chosen:
        rows += [await fresh(kind, large) for kind in kinds]
    if "connections" in chosen:
        rows += [await fresh(kind, many_connections, 10_000) for kind in kinds]
    return rows


async def metrics_rows(work: Workload) -> list[Row]:
    """A/B/A/B, each on a fresh service: the instrumentation's cost."""
    on_rows: list[Row] = []
    off_rows: list[Row] = []
    for _ in range(2):
        for module in ("app", "bench.nometrics"):
            service = await start_service("instant", 1, module=module)
            row = await throughput(service, work.typical_bodies, work.args.sessions, "4KB")
            (on_rows if module == "app" else off_rows).append(row)
            await service.stop()
    for on, off in zip(on_rows, off_rows, strict=True):
        on.ratio = on.stored_rate / off.stored_rate
        on.run += " metrics on (ratio: on / off)"
    return off_rows + on_rows


async def auth_rows(work: Workload) -> list[Row]:
    """DKIM-signed mail with AUTH_CHECKS off then record (A/B/A/B instant, A/B durable)."""
    rows: list[Row] = []
    one = signed_typical()
    bodies = [(f"auth{n}", one) for n in range(work.args.messages)]
    for ack_mode in ("instant", "durable"):
        pair: dict[str, Row] = {}
        for _ in range(2 if ack_mode == "instant" else 1):
            for checks in ("off", "record"):
                service = await start_service(ack_mode, 1, auth_checks=checks)
                label = f"signed 4KB auth {checks}"
                row = await throughput(service, bodies, work.args.sessions, label)
                if checks == "off":
                    pair["off"] = row
                else:
                    row.ratio = row.stored_rate / pair["off"].stored_rate
                    row.run += " (ratio: record / off)"
                rows.append(row)
                await service.stop()
    return rows


async def scaling_rows(chosen: set[str]) -> list[Row]:
    """How cost grows (bench/scaling.py): rows stored, sizes, recipients, memory, storage."""
    rows: list[Row] = []
    if "growth" in chosen:
        rows += [await scaling.growth(count) for count in scaling.GROWTH_SIZES]
    if "sizes" in chosen:
        for size, count in ((1024, 1000), (64 * 1024, 200), (1 << 20, 20), (5 << 20, 6)):
            rows.append(await scaling.sizes(lambda: start_service(None, 1), size, count))
        rows.append(await scaling.sizes(lambda: start_service(None, 1), (25 << 20) - 4096, 3))
    if "recipients" in chosen and mta.available():
        for rcpts in (1, 10, 100):
            service = await start_service(None, 1, defaults=True)
            rows.append(await scaling.recipients(service, 1000 // rcpts * 2, rcpts))
            await service.stop()
    if "memory25" in chosen:
        rows.append(await fresh("sink", scaling.memory25))
        rows.append(await fresh("service", scaling.memory25))
        rows.append(await fresh("service", scaling.memory25, 50, True))
    if "storage" in chosen and CORPUS.is_dir():
        for below in (None, 200_000):  # all; the throughput rows' corpus mix
            service = await start_service(None, 1, defaults=True)
            rows.append(await scaling.storage(service, below))
            await service.stop()
    return rows


async def workers_rows(work: Workload) -> list[Row]:
    """WORKERS=2 against a two-process null sink."""
    sink = await start_sink(2)
    rows = await work.measure(sink, 2)
    await sink.stop()
    service = await start_service("instant", 2)
    rows += await work.measure(service, 2)
    await service.stop()
    return rows


async def run(args: argparse.Namespace) -> list[Row]:
    chosen = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if args.smoke:
        chosen &= {"mta", "throughput", "paced"}
    work = Workload.of(args)
    rows: list[Row] = []
    if "mta" in chosen and mta.available():
        rows += await mta_rows(args.mta_messages)
    if chosen & {"throughput", "paced"}:
        rows += await throughput_and_paced_rows(work, chosen)
    rows += await fresh_pair_rows(chosen)
    if "metrics" in chosen:
        rows += await metrics_rows(work)
    if "auth" in chosen:
        rows += await auth_rows(work)
    rows += await scaling_rows(chosen)
    if "workers" in chosen:
        rows += await workers_rows(work)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI, seconds")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--mta-messages", type=int, default=5_000, help="smtp-source headline")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200, help="paced run, msg/s")
    parser.add_argument("--seconds", type=float, default=10, help="paced run length")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.sessions, args.rate, args.seconds = 300, 10, 100, 1
        args.mta_messages = 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load_avg = os.getloadavg()
    rows = uvloop.run(run(args))
    text = table(rows)
    header = (
        f"cores: {os.cpu_count()}, load before: {load_avg[0]:.2f}, "
        f"messages: {args.messages}, sessions: {args.sessions}, "
        f"paced: {args.rate:.0f}/s for {args.seconds:.0f}s"
    )
    print(header)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(header + "\n\n" + text + "\n")
    if any(r.errors for r in rows if "connections open" not in r.run):
        print("errors in the run: see the table", file=sys.stderr)


if __name__ == "__main__":
    main()

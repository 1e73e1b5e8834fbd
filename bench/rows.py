"""The result table of `python -m bench`: one Row per run, and how rows are printed."""

from __future__ import annotations

import dataclasses

from . import procstat
from .client import Sent, percentile
from .report import cell, markdown_table
from .targets import Target


@dataclasses.dataclass
class Row:
    run: str
    accepted_rate: float = float("nan")
    stored_rate: float = float("nan")
    ratio: float = float("nan")
    cpu_ms: float = float("nan")
    pg_cpu_ms: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    p999: float = float("nan")
    lag50: float = float("nan")
    lag99: float = float("nan")
    cpu_ratio: float = float("nan")
    rss_mib: str = ""
    errors: int = 0


def rss_text(target: Target, field: str = "VmHWM") -> str:
    return "/".join(str(procstat.memory_kib(pid, field) // 1024) for pid in target.pids())


def latency_row(
    run: str, results: list[Sent], target: Target, errors: int, rss_field: str = "VmHWM"
) -> Row:
    """A table row with the 250 latency percentiles of `results`, in ms."""
    latencies = [r.latency * 1000 for r in results]
    return Row(
        run=run,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        p999=percentile(latencies, 0.999),
        rss_mib=rss_text(target, rss_field),
        errors=errors,
    )


COLUMNS = (
    "run", "msg/s accepted", "msg/s stored", "stored / null sink", "CPU ms/msg ours",
    "CPU / null sink", "CPU ms/msg PostgreSQL", "250 p50 ms", "p99 ms", "p99.9 ms",
    "lag p50 ms", "lag p99 ms", "RSS MiB", "errors",
)  # fmt: skip


def table(rows: list[Row]) -> str:
    return markdown_table(COLUMNS, (
        (r.run, cell(r.accepted_rate, 0), cell(r.stored_rate, 0), cell(r.ratio),
         cell(r.cpu_ms), cell(r.cpu_ratio), cell(r.pg_cpu_ms), cell(r.p50), cell(r.p99),
         cell(r.p999), cell(r.lag50, 1), cell(r.lag99, 1), r.rss_mib, r.errors)
        for r in rows
    ))  # fmt: skip
